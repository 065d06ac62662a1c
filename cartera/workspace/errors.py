"""What the workspace refuses: each error names the field of the agent's input it is about; nothing is stored."""

from __future__ import annotations

from datetime import datetime

from cartera.core.errors import CarteraError, UsageError
from cartera.workspace.dispositions import SavedDisposition


class WorkspaceError(CarteraError):
    """Bad input from an agent (or an integration): ``field`` is the input's field, ``str()`` says it first."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class PageNotOpen(UsageError):
    """The agent's page has not opened since the node started (its stream reconnects after a restart): the node
    does not know the agent's state yet; ``field`` is ``agent``."""

    field = "agent"

    def __init__(self, agent: str) -> None:
        super().__init__(f"agent {agent}: open the agent page first (not opened since the node started)")


class NotYourCall(WorkspaceError):
    """The attempt is unknown at this site, or was not connected to this agent."""


class AlreadyDispositioned(WorkspaceError):
    """The attempt has its disposition already (a double submit): ``saved`` is the one kept."""

    def __init__(self, saved: SavedDisposition) -> None:
        super().__init__(
            "attempt", f"call {saved.attempt_id} was already dispositioned {saved.code!r} by {saved.agent}"
        )
        self.saved = saved


class CallbackNotAllowed(WorkspaceError):
    """The compliance gate would not allow a call at the callback's time; ``next_allowed_at`` is when it would."""

    def __init__(self, message: str, next_allowed_at: datetime | None) -> None:
        super().__init__("callback.at", message)
        self.next_allowed_at = next_allowed_at
