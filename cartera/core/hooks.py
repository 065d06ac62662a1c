"""The plugin manager and its typed facade: core calls hooks only through :class:`Hooks`."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from cartera.core import hookspecs
from cartera.core.config import PLUGIN_KINDS, read_document
from cartera.core.errors import PluginError
from cartera.core.models import Activity, CallRequest, CallResult, DeliveryReport, StoredObject
from cartera.core.registry import AdapterCatalog

log = logging.getLogger("cartera.plugins")

ENTRY_POINT_GROUP = "cartera"

#: The built-in adapters by (kind, name) and the module that registers each, known without importing them, so
#: a node imports only the modules its site names (tests/test_plugin_loading.py checks the table against what
#: each module registers). Third-party plugins come through the entry-point group.
BUILTIN_ADAPTERS: dict[tuple[str, str], str] = {
    ("dialer", "simulator"): "cartera.plugins.dialers.simulator.plugin",
    ("dialer", "asterisk_ami"): "cartera.plugins.dialers.asterisk_ami.plugin",
    ("dialer", "sip_trunk"): "cartera.plugins.dialers.sip_trunk.plugin",
    ("recording", "localdir"): "cartera.plugins.recording.localdir.plugin",
    ("recording", "s3"): "cartera.plugins.recording.s3.plugin",
    ("sms", "outbox"): "cartera.plugins.sms.outbox.plugin",
    ("sms", "kannel"): "cartera.plugins.sms.kannel.plugin",
    ("sms", "smpp"): "cartera.plugins.sms.smpp.plugin",
    ("crm_sync", "csv"): "cartera.plugins.crm_sync.csv_dir.plugin",
    ("crm_sync", "sftp_csv"): "cartera.plugins.crm_sync.sftp_csv.plugin",
    ("crm_sync", "http"): "cartera.plugins.crm_sync.http.plugin",
    ("crm_sync", "sql"): "cartera.plugins.crm_sync.sql.plugin",
}


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    version: str
    origin: str


class Hooks:
    """Typed calls into the plugin manager. Observer failures are logged, never propagated."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._pm

    def collect_adapters(self) -> AdapterCatalog:
        catalog = AdapterCatalog.empty()
        hook = self._pm.hook
        try:
            hook.cartera_register_dialers(register=catalog.dialers)
            hook.cartera_register_recording_stores(register=catalog.recording_stores)
            hook.cartera_register_sms_gateways(register=catalog.sms_gateways)
            hook.cartera_register_crm_syncs(register=catalog.crm_syncs)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"a plugin failed while registering adapters: {exc!r}") from exc
        return catalog

    def call_finished(self, site: str, request: CallRequest, result: CallResult) -> None:
        self._observe("cartera_call_finished", site=site, request=request, result=result)

    def recording_archived(self, site: str, recording_id: int, stored: StoredObject) -> None:
        self._observe("cartera_recording_archived", site=site, recording_id=recording_id, stored=stored)

    def sms_delivery(self, site: str, message_id: int, report: DeliveryReport) -> None:
        self._observe("cartera_sms_delivery", site=site, message_id=message_id, report=report)

    def activity_recorded(self, site: str, activity: Activity) -> None:
        self._observe("cartera_activity_recorded", site=site, activity=activity)

    def _observe(self, hook_name: str, **kwargs: Any) -> None:
        caller = getattr(self._pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception:
                log.exception("observer %s of plugin %s failed", hook_name, impl.plugin_name)

    def describe(self, catalog: AdapterCatalog) -> list[PluginInfo]:
        """Name, version and origin of every adapter, for the ``plugins`` command."""
        dists = metadata.packages_distributions()
        infos = []
        for kind, registry in catalog.by_kind().items():
            for name, adapter in registry.items():
                top = adapter.__module__.split(".")[0]
                dist_names = dists.get(top, [])
                if top == "cartera":
                    origin, dist = "built-in", "cartera"
                elif dist_names:
                    origin = dist = dist_names[0]
                else:
                    origin, dist = f"module {adapter.__module__}", ""
                try:
                    version = metadata.version(dist) if dist else "unknown"
                except metadata.PackageNotFoundError:
                    version = "unknown"
                infos.append(PluginInfo(kind=kind, name=name, version=version, origin=origin))
        return infos


def load_plugins(
    *, entry_points: bool = True, extra: Iterable[object] = (), builtins: Iterable[str] = BUILTIN_ADAPTERS.values()
) -> Hooks:
    """Build the plugin manager: the ``builtins`` modules (default: every built-in), then the ``cartera`` entry
    points, then ``extra``.

    Raises :class:`PluginError` naming the plugin when one cannot be imported or implements a hook that
    does not exist (``check_pending``), so a misspelled hook fails at start-up.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for module_name in builtins:
        _register(pm, _import(module_name), module_name)
    if entry_points:
        _load_entry_points(pm)
    for plugin in extra:
        _register(pm, plugin, None)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_name(exc.plugin) or exc.plugin!r}: {exc}") from exc
    return Hooks(pm)


def load_site_plugins(config: Path, site: str) -> Hooks:
    """The plugins of site ``site`` of ``config``: the built-in modules of the adapters it names, and the
    ``cartera`` entry points. When it names an adapter none of these registers, every built-in is loaded, so
    the configuration's error lists every known adapter."""
    named = _named_adapters(config, site)
    hooks = load_plugins(builtins=[BUILTIN_ADAPTERS[choice] for choice in named if choice in BUILTIN_ADAPTERS])
    registries = hooks.collect_adapters().by_kind()
    if all(name in registries[kind].names() for kind, name in named):
        return hooks
    return load_plugins()


def _named_adapters(config: Path, site: str) -> list[tuple[str, str]]:
    """(kind, name) of each adapter the site's tables name, as written; :func:`load_site` validates them."""
    raw = read_document(config)[1]["sites"].get(site)
    if not isinstance(raw, dict):
        return []
    tables = {kind: raw.get(kind) for kind in PLUGIN_KINDS}
    return [(kind, str(table.get("plugin"))) for kind, table in tables.items() if isinstance(table, dict)]


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(f"cannot import plugin {module_name}: {exc!r}") from exc


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            dist = ep.dist.name if ep.dist else "?"
            raise PluginError(f"cannot load plugin {ep.name!r} ({ep.value}) from distribution {dist}: {exc!r}") from exc
        _register(pm, plugin, ep.name)


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from exc
