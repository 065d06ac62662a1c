"""A SIP worker process: one pjsua Endpoint (via :class:`SipTrunk`) serving the calls the dialer sends it.

The parent talks to it over a :func:`multiprocessing.Pipe`. Parent → worker: ``("call", CallRequest)``,
``("cancel", attempt_id)``, ``("check",)``, ``("stop",)``. Worker → parent: ``("started", port)`` or
``("failed", text)``, then ``("answered", attempt_id)``, ``("result", CallResult)``, ``("cancel", attempt_id,
cancelled)``, ``("check", ok, detail)`` and, last, ``("stopped",)``.
The worker stops its trunk (every call reported) when told to or when the parent is gone, then returns: the
process exits 0 once pjsua is destroyed.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cartera.plugin import (
    Activity,
    AgentConnected,
    CallRequest,
    CallResult,
    Clock,
    DeliveryReport,
    InboundSms,
    Recording,
    SystemClock,
)
from cartera.plugins.dialers.sip_trunk.client import SipTrunk
from cartera.plugins.dialers.sip_trunk.config import SipTrunkConfig


@dataclass(frozen=True)
class _WorkerContext:
    """The plugin context inside the worker: call results go back to the parent; nothing else is reported."""

    site: str
    data_dir: Path
    send: Callable[..., None]
    clock: Clock = field(default_factory=SystemClock)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("cartera.plugin.sip_trunk"))
    base_url: str = ""

    def report_call(self, result: CallResult) -> None:
        self.send("result", result)

    def report_recording(self, recording: Recording) -> None:
        raise NotImplementedError("a SIP trunk worker makes no recordings")

    def report_delivery(self, report: DeliveryReport) -> None:
        raise NotImplementedError("a SIP trunk worker sends no SMS")

    def report_inbound(self, message: InboundSms) -> None:
        raise NotImplementedError("a SIP trunk worker receives no SMS")

    def report_agent_connected(self, event: AgentConnected) -> None:
        raise NotImplementedError("a SIP trunk worker hands answered calls to the PBX's queue, which knows the agent")

    def exported_activities(self, creditor: str, after: int, limit: int) -> list[Activity]:
        raise NotImplementedError("a SIP trunk worker exports no activities")


def serve(conn: Connection, config: SipTrunkConfig, site: str, data_dir: Path) -> None:
    """The worker's main: run one trunk share until told to stop (or the parent is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the node stops the workers
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s sip-worker %(message)s")
    lock = threading.Lock()

    def send(*message: Any) -> None:
        with lock, suppress(OSError):  # OSError: the parent is gone, nobody to tell
            conn.send(message)

    context = _WorkerContext(site, data_dir, send)
    trunk = SipTrunk(config, context, on_answer=lambda request: send("answered", request.attempt_id))
    try:
        trunk.start()
    except Exception as exc:
        send("failed", str(exc))
        trunk.stop()
        return
    send("started", trunk.local_port)
    try:
        _serve_requests(conn, trunk, send)
    finally:
        trunk.stop()
        send("stopped")


def _serve_requests(conn: Connection, trunk: SipTrunk, send: Any) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "call" and isinstance(message[1], CallRequest):
            trunk.place_call(message[1])
        elif kind == "cancel" and isinstance(message[1], int):
            send("cancel", message[1], trunk.cancel(message[1]))
        elif kind == "check":
            result = trunk.check()
            send("check", result.ok, result.detail)
        elif kind == "stop":
            return
