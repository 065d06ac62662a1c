"""The node's HTTP server: started by ``run`` on the configured port, serving each adapter's routes."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from cartera.core.adapters import AdapterCapabilities, PluginConfig, SmsGateway
from cartera.core.errors import CarteraError
from cartera.core.hooks import load_plugins
from cartera.core.hookspecs import hookimpl
from cartera.core.models import CheckResult, InboundSms, SmsMessage, SmsSubmitResult
from cartera.core.registry import AdapterRegistry
from cartera.core.store.schema import AuditEntry
from cartera.node import Node
from tests.conftest import write_sites


class Mo(BaseModel):
    sender: str
    text: str


class CallbackGateway(SmsGateway[PluginConfig]):
    """A gateway whose vendor calls back over HTTP, as Kannel's DLR and MO URLs do."""

    name: ClassVar[str] = "callback"
    config_model: ClassVar[type[PluginConfig]] = PluginConfig
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities(serves_http=True)

    def check(self) -> CheckResult:
        return CheckResult(True, "ok")

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        raise NotImplementedError

    def http_router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/mo")
        def mo(body: Mo) -> dict[str, str]:
            self.context.report_inbound(InboundSms(body.sender, body.text, self.context.clock.now(), "gw-1"))
            return {"callback": f"{self.context.base_url}/plugins/sms/mo"}

        return router


class CallbackPlugin:
    @hookimpl
    def cartera_register_sms_gateways(self, register: AdapterRegistry[SmsGateway[Any]]) -> None:
        register.add(CallbackGateway)


def callback_site(tmp_path: Path) -> Path:
    config = write_sites(tmp_path)
    text = config.read_text().replace('plugin = "outbox"\npath = "sms/outbox.jsonl"', 'plugin = "callback"')
    config.write_text(text)
    return config


def serving(node: Node) -> threading.Thread:
    """``node`` running in a thread, once its web server listens and its scheduler runs (the server starts a moment
    before the scheduler, and /healthz fails the scheduler's check until it runs)."""
    runner = threading.Thread(target=node.run, kwargs={"duration": 60})
    runner.start()
    web = node.site.section.web
    for _ in range(500):
        with socket.socket() as probe:
            if probe.connect_ex((web.bind, web.port)) == 0 and node.scheduler_running:
                return runner
        runner.join(0.02)
    raise AssertionError("the node's web server never listened or its scheduler never ran")


def post(url: str, body: dict[str, str]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_run_serves_the_adapters_routes_under_their_kind(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(callback_site(tmp_path), with_hooks=load_plugins(entry_points=False, extra=[CallbackPlugin()]))
    runner = serving(node)
    try:
        base = node.site.section.web.base_url
        answer = post(f"{base}/plugins/sms/mo", {"sender": "+573001234567", "text": "hola"})
    finally:
        node.stop()
        runner.join(30)
    assert answer == {"callback": f"{base}/plugins/sms/mo"}
    with node.db.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "sms.inbound")).one()
        assert (entry.subject, entry.details["text"]) == ("+573001234567", "hola")
    assert not runner.is_alive()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", node.site.section.web.port)) != 0, "the server outlived run"


def test_a_port_in_use_fails_run_with_a_clear_error(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(write_sites(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", node.site.section.web.port))
        taken.listen()
        with pytest.raises(CarteraError, match=rf"cannot listen on 127.0.0.1:{node.site.section.web.port}"):
            node.run(duration=5)
