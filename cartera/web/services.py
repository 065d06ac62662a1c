"""What a node hands its web app: the narrow services the pages, ``/healthz`` and ``/metrics`` use, never the node."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from cartera.contact.calls import CallService
from cartera.core.audit import AuditLog
from cartera.core.clock import Clock
from cartera.core.config import WebConfig
from cartera.core.models import CheckResult
from cartera.recordings.access import RecordingLibrary
from cartera.runtime.page_reads import PageReads
from cartera.runtime.store_status import StoreStatus
from cartera.users.directory import UserDirectory
from cartera.users.sessions import LoginThrottler, SessionStore
from cartera.workspace.hub import WorkspaceHub
from cartera.workspace.offers import PreviewOffers
from cartera.workspace.service import WorkspaceService


class CheckedLine(Protocol):
    """One line of the node's latest check: what was checked, and how it went."""

    @property
    def what(self) -> str: ...

    @property
    def result(self) -> CheckResult: ...


class NodeState(Protocol):
    """What ``/healthz`` reports of the running node."""

    @property
    def scheduler_running(self) -> bool: ...

    @property
    def last_check(self) -> tuple[datetime, Sequence[CheckedLine]] | None: ...


@dataclass(frozen=True)
class WebServices:
    """One site's services for its web app. ``library`` reaches the site's recording store (a
    :class:`~cartera.core.errors.UsageError` when it has none); ``routers`` starts the adapters that serve HTTP
    and gives their routes by kind."""

    site: str
    zone: ZoneInfo
    country: str
    data_dir: Path
    config: WebConfig
    clock: Clock
    users: UserDirectory  #: the users of the node's pages
    sessions: SessionStore  #: their sign-in sessions
    throttle: LoginThrottler  #: failed sign-ins, slowed down
    audit: AuditLog  #: the site's audit log, written
    reads: PageReads  #: what the pages read of the store: KPIs, the audit log, the wallboard's counts...
    store: StoreStatus  #: what /healthz and /metrics read of the store
    library: RecordingLibrary
    routers: Callable[[], list[tuple[str, APIRouter]]]
    state: NodeState
    calls: CallService  #: the one path of a call to the dialer (an agent's preview call)
    workspace: WorkspaceHub  #: the agents' states and the workspace's live events
    workspace_service: WorkspaceService  #: dispositions, promises and callbacks
    offers: PreviewOffers  #: preview mode's offers of the next account, and the agents' own calls
