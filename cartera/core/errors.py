"""Errors core raises for operators: each maps to one exit code and one clear line."""

from __future__ import annotations


class CarteraError(Exception):
    """Base: ``str(err)`` is the one line an operator reads. ``exit_code`` follows the CLI contract."""

    exit_code = 1


class ConfigError(CarteraError):
    """``sites.toml`` is unreadable or invalid, or names something that does not exist."""

    exit_code = 2


class SettingError(ValueError):
    """What a config model's validator raises about a setting inside the field it validates: ``key`` (from that
    field down, e.g. ``("BCO", "token")`` under ``creditors``) is the key the configuration error names, with its
    line."""

    def __init__(self, message: str, *key: str) -> None:
        super().__init__(message)
        self.key = key


class PluginError(CarteraError):
    """A plugin cannot be loaded or registered (bad hook name, duplicate adapter name, import failure)."""

    exit_code = 2


class UsageError(CarteraError):
    exit_code = 2


class IntegrityError(CarteraError):
    """Stored bytes do not match their checksums."""


class ObjectNotFound(CarteraError):
    """A recording store has nothing under the requested key."""


class NotFound(CarteraError):
    """An id given on the command line does not exist (or belongs to another site)."""


class StoreUnavailable(CarteraError):
    """A recording store cannot take work now (down, throttling or failing after retries, credentials or
    bucket refused): the recording itself is fine and stays on local disk for the next run."""


class ObjectLocked(CarteraError):
    """A recording store refuses to delete an object under retention or legal hold."""


class Unsupported(CarteraError):
    """The site's plugin cannot do what was asked (e.g. a directory store issuing expiring URLs)."""


class UnknownAgent(CarteraError):
    """A dialer was asked to pause or resume an agent it does not know (no such queue member or seat)."""


class DialerUnavailable(CarteraError):
    """The site's dialer cannot be reached now (its connection is down, it failed): nothing was placed, paused or
    resumed there; the same request succeeds once it is back."""
