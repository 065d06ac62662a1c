"""Adapter registries: plugins add adapter classes by name, a site picks one per kind."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Generic

from cartera.core.adapters import AdapterT, CrmSync, Dialer, PluginConfig, RecordingStore, SmsGateway
from cartera.core.errors import ConfigError, PluginError


class AdapterRegistry(Generic[AdapterT]):
    """The adapters of one kind, by name. Passed to the ``cartera_register_*`` hooks."""

    def __init__(self, kind: str, base: type[AdapterT]) -> None:
        self.kind = kind
        self._base = base
        self._adapters: dict[str, type[AdapterT]] = {}

    def add(self, adapter: type[AdapterT]) -> None:
        """Register ``adapter`` under ``adapter.name``; a second adapter with the same name is an error."""
        where = f"{adapter.__module__}.{adapter.__qualname__}"
        if not (inspect.isclass(adapter) and issubclass(adapter, self._base)):
            raise PluginError(f"{where} registered as a {self.kind} but is not a {self._base.__name__}")
        if inspect.isabstract(adapter):
            missing = ", ".join(sorted(getattr(adapter, "__abstractmethods__", ())))
            raise PluginError(f"{where} does not implement: {missing}")
        name = getattr(adapter, "name", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"{where} needs a class attribute name that is an identifier")
        model = getattr(adapter, "config_model", None)
        if not (inspect.isclass(model) and issubclass(model, PluginConfig)):
            raise PluginError(f"{where} needs a config_model subclassing cartera.core.adapters.PluginConfig")
        self._check_capabilities(adapter, where)
        other = self._adapters.get(name)
        if other is not None and other is not adapter:
            raise PluginError(
                f"two {self.kind} adapters are named {name!r}: {other.__module__}.{other.__qualname__} and {where}"
            )
        self._adapters[name] = adapter

    def _check_capabilities(self, adapter: type[AdapterT], where: str) -> None:
        """The declared capabilities are of the kind's type and name exactly the optional methods overridden."""
        declared = adapter.capabilities
        kind = type(self._base.capabilities)
        if type(declared) is not kind:
            raise PluginError(f"{where} declares capabilities {declared!r}: a {self.kind} declares a {kind.__name__}")
        for capability, methods in kind.methods().items():
            for method in methods:
                overridden = getattr(adapter, method) is not getattr(self._base, method)
                if getattr(declared, capability) and not overridden:
                    raise PluginError(f"{where} declares the capability {capability} but does not override {method}()")
                if overridden and not getattr(declared, capability):
                    raise PluginError(
                        f"{where} overrides {method}() but does not declare the capability {capability} "
                        f"(capabilities = {kind.__name__}({capability}=True, ...))"
                    )

    def get(self, name: str) -> type[AdapterT]:
        try:
            return self._adapters[name]
        except KeyError:
            known = ", ".join(sorted(self._adapters)) or "none installed"
            raise ConfigError(f"unknown {self.kind} plugin {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._adapters)

    def items(self) -> list[tuple[str, type[AdapterT]]]:
        return sorted(self._adapters.items())


@dataclass(frozen=True)
class AdapterCatalog:
    """Every registered adapter, by kind."""

    dialers: AdapterRegistry[Dialer[Any]]
    recording_stores: AdapterRegistry[RecordingStore[Any]]
    sms_gateways: AdapterRegistry[SmsGateway[Any]]
    crm_syncs: AdapterRegistry[CrmSync[Any]]

    @classmethod
    def empty(cls) -> AdapterCatalog:
        return cls(
            dialers=AdapterRegistry("dialer", Dialer),
            recording_stores=AdapterRegistry("recording", RecordingStore),
            sms_gateways=AdapterRegistry("sms", SmsGateway),
            crm_syncs=AdapterRegistry("crm_sync", CrmSync),
        )

    def by_kind(self) -> dict[str, AdapterRegistry[Any]]:
        return {
            "dialer": self.dialers,
            "recording": self.recording_stores,
            "sms": self.sms_gateways,
            "crm_sync": self.crm_syncs,
        }
