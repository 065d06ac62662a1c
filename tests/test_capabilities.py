"""Declared capabilities: registration refuses a declaration that does not match the class, every built-in adapter
declares its kind's, and core asks the declaration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cartera.core.adapters import (
    Adapter,
    AdapterCapabilities,
    CrmSync,
    CrmSyncCapabilities,
    Dialer,
    DialerCapabilities,
    PluginConfig,
    RecordingStore,
    RecordingStoreCapabilities,
    SmsGateway,
)
from cartera.core.clock import SimulatedClock
from cartera.core.errors import PluginError
from cartera.core.hooks import Hooks
from cartera.core.registry import AdapterCatalog, AdapterRegistry
from cartera.core.store.database import Database
from cartera.core.testing.context import CapturingContext
from cartera.plugins.crm_sync.csv_dir.config import CsvDirConfig
from cartera.plugins.crm_sync.csv_dir.plugin import CsvDirSync
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.importer import AssignmentImporter
from cartera.portfolio.sync import CreditorSync

NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
DELIVERY = (
    "cuenta;nombre;telefono1;saldo;moneda\r\n"
    "BCO-1;Ana Gómez;3001234567;1.000;COP\r\n"
    "BCO-2;Luis Peña;3101234567;mil pesos;COP\r\n"  # a bad balance: quarantined
)

#: Each kind's base class, the type of its declaration, and its capabilities that are optional methods.
KINDS: list[tuple[type[Adapter[Any]], type[AdapterCapabilities], list[tuple[str, str]]]] = [
    (
        Dialer,
        DialerCapabilities,
        [
            ("serves_http", "http_router"),
            ("cancels", "cancel"),
            ("reconciles", "reconcile"),
            ("pauses_agents", "pause_agent"),
            ("pauses_agents", "resume_agent"),
            ("reports_seats", "seats"),
        ],
    ),
    (RecordingStore, RecordingStoreCapabilities, [("serves_http", "http_router"), ("presigned_urls", "url")]),
    (SmsGateway, AdapterCapabilities, [("serves_http", "http_router")]),
    (
        CrmSync,
        CrmSyncCapabilities,
        [
            ("serves_http", "http_router"),
            ("rejection_reports", "report_rejections"),
            ("restricts_deliveries", "delivers"),
        ],
    ),
]
CASES = [(base, kind, capability, method) for base, kind, methods in KINDS for capability, method in methods]


def _unimplemented(*_: object) -> Any:
    raise NotImplementedError


def adapter_class(base: type[Adapter[Any]], capabilities: AdapterCapabilities, *overrides: str) -> type[Any]:
    """A concrete adapter of ``base``'s kind declaring ``capabilities`` and overriding ``overrides``."""
    methods = dict.fromkeys((*getattr(base, "__abstractmethods__", ()), *overrides), _unimplemented)
    namespace = {"name": "probe", "config_model": PluginConfig, "capabilities": capabilities, **methods}
    return type("Probe", (base,), namespace)


def registry_of(base: type[Adapter[Any]]) -> AdapterRegistry[Any]:
    return AdapterRegistry(base.__name__, base)


def test_the_declarations_list_the_optional_methods() -> None:
    for _, kind, methods in KINDS:
        grouped: dict[str, tuple[str, ...]] = {}
        for capability, method in methods:
            grouped[capability] = (*grouped.get(capability, ()), method)
        assert kind.methods() == grouped


def _others(kind: type[AdapterCapabilities], capability: str, method: str) -> list[str]:
    """The capability's methods but ``method`` (a capability may be several methods: pause and resume)."""
    return [other for other in kind.methods()[capability] if other != method]


@pytest.mark.parametrize(("base", "kind", "capability", "method"), CASES)
def test_a_declared_capability_without_its_method_is_refused(
    base: type[Adapter[Any]], kind: type[AdapterCapabilities], capability: str, method: str
) -> None:
    adapter = adapter_class(base, kind(**{capability: True}), *_others(kind, capability, method))
    with pytest.raises(PluginError) as raised:
        registry_of(base).add(adapter)
    message = str(raised.value)
    assert "Probe" in message
    assert f"declares the capability {capability} but does not override {method}()" in message


@pytest.mark.parametrize(("base", "kind", "capability", "method"), CASES)
def test_an_overridden_method_without_its_capability_is_refused(
    base: type[Adapter[Any]], kind: type[AdapterCapabilities], capability: str, method: str
) -> None:
    adapter = adapter_class(base, kind(), method)
    with pytest.raises(PluginError) as raised:
        registry_of(base).add(adapter)
    message = str(raised.value)
    assert "Probe" in message
    assert f"overrides {method}() but does not declare the capability {capability}" in message
    assert f"{kind.__name__}({capability}=True" in message


@pytest.mark.parametrize(("base", "kind", "capability", "method"), CASES)
def test_a_declaration_matching_the_class_is_registered(
    base: type[Adapter[Any]], kind: type[AdapterCapabilities], capability: str, method: str
) -> None:
    registry = registry_of(base)
    registry.add(adapter_class(base, kind(**{capability: True}), method, *_others(kind, capability, method)))
    assert registry.names() == ["probe"]


@pytest.mark.parametrize(("base", "kind"), [(base, kind) for base, kind, _ in KINDS])
def test_a_declaration_of_another_kind_is_refused(base: type[Adapter[Any]], kind: type[AdapterCapabilities]) -> None:
    other = DialerCapabilities() if kind is not DialerCapabilities else RecordingStoreCapabilities()
    with pytest.raises(PluginError, match=f"Probe declares capabilities .*: a .* declares a {kind.__name__}$"):
        registry_of(base).add(adapter_class(base, other))


def test_every_built_in_adapter_declares_its_kinds_capabilities(hooks: Hooks) -> None:
    catalog = hooks.collect_adapters()
    declared = {
        (kind, name): type(adapter.capabilities)
        for kind, registry in catalog.by_kind().items()
        for name, adapter in registry.items()
    }
    kinds = {"dialer": DialerCapabilities, "recording": RecordingStoreCapabilities, "sms": AdapterCapabilities}
    assert declared == {key: kinds.get(key[0], CrmSyncCapabilities) for key in declared}
    assert all(
        "capabilities" in vars(adapter) for registry in catalog.by_kind().values() for _, adapter in registry.items()
    )


class SilentCsvSync(CsvDirSync):
    """The csv plugin without rejection reports: the creditor gets no report of bad rows."""

    capabilities: ClassVar[CrmSyncCapabilities] = CrmSyncCapabilities(restricts_deliveries=True)
    report_rejections = CrmSync.report_rejections


def test_the_sync_sends_rejection_reports_only_when_declared(tmp_path: Path, hooks: Hooks) -> None:
    """The sync asks the declaration: an adapter without rejection reports imports a delivery with bad rows and
    acknowledges it, reporting nothing (the base's report_rejections would refuse)."""
    AdapterCatalog.empty().crm_syncs.add(SilentCsvSync)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "asignacion.csv").write_text(DELIVERY, encoding="utf-8")
    settings = {"inbox": tmp_path / "inbox", "outbox": tmp_path / "outbox", "creditor": "BCO", "portfolio": "TARJETAS"}
    settings["settle_seconds"] = 0
    sync = SilentCsvSync(CsvDirConfig.model_validate(settings), CapturingContext(tmp_path / "data"))
    sync.start()
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
    (imported,) = CreditorSync(sync, importer, ActivityExporter("t", db, sync)).run_once().imports
    assert imported.quarantined, "the fixture must hold a bad row"
    assert list(sync.fetch()) == []
    assert not any(path.name.endswith(".rechazos.csv") for path in (tmp_path / "outbox").iterdir())
