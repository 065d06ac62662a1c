"""The node's health: a check of its store, each of its adapters, the creditor sync's last run and the recordings'
backlog; the latest check and whether the scheduler runs, for ``/healthz``."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cartera.core.adapters import Adapter
from cartera.core.config import WebConfig
from cartera.core.models import CheckResult
from cartera.core.store.database import Database
from cartera.portfolio.sync import last_failures
from cartera.recordings.archival import Archiver
from cartera.recordings.catalog import Backlog
from cartera.web.server import bind_problem


@dataclass(frozen=True)
class CheckLine:
    what: str
    result: CheckResult


class Health:
    """``plugins`` names the site's plugin of each kind, ``adapter`` gives that kind's adapter (started),
    ``running`` whether the node's scheduler runs, ``running_here`` which node of the site runs on this host (its
    pid and host; ``None``: none)."""

    def __init__(
        self,
        db: Database,
        plugins: Mapping[str, str],
        adapter: Callable[[str], Adapter[Any]],
        archiver: Archiver | None,
        *,
        running: Callable[[], bool],
        sync_failures: Path | None = None,
        web: WebConfig | None = None,
        running_here: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._db = db
        self._web = web
        self._running_here = running_here
        self._plugins = plugins
        self._adapter = adapter
        self._archiver = archiver
        self._running = running
        self._sync_failures = sync_failures
        #: The latest :meth:`check`: when (wall clock) and its lines.
        self.last_check: tuple[datetime, list[CheckLine]] | None = None

    @property
    def scheduler_running(self) -> bool:
        return self._running()

    def check(self) -> list[CheckLine]:
        """The store, each adapter (a failing check is a line, never an error), ``[web] bind`` and port, tried
        (unless this node runs: it listens), then the recordings' backlog."""
        lines = [CheckLine("store", CheckResult(True, f"{self._db.display_url} migrated"))]
        for kind, name in self._plugins.items():
            try:
                result = self._adapter(kind).check()
            except Exception as exc:
                result = CheckResult(False, f"{type(exc).__name__}: {exc}")
            lines.append(CheckLine(f"{kind} {name}", result))
        if self._web is not None and self._web.enabled and not self._running():  # a running node listens already
            lines.append(CheckLine("web", _bind_result(self._web.bind, self._web.port, self._running_here)))
        if self._sync_failures is not None:
            lines.append(CheckLine("creditor sync", _sync_result(last_failures(self._sync_failures))))
        if self._archiver is not None:
            lines.append(CheckLine("recordings", _backlog_result(self._archiver.backlog())))
        self.last_check = (datetime.now(UTC), lines)
        return lines


def _bind_result(bind: str, port: int, running_here: Callable[[], str | None]) -> CheckResult:
    """Whether ``[web] bind`` resolves to addresses ``run`` can listen on at ``port``: tried, and let go at once
    (round 21 C-F10: another process holding the port passed check, then run failed). A port taken while the
    site's own node runs on this host (its lock or lease says so) is that node's: not tried."""
    try:
        addresses = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return CheckResult(False, f"bind {bind!r} does not resolve: {exc.strerror or exc} (sites.toml [web] bind)")
    shown = ", ".join(sorted({str(address[4][0]) for address in addresses}))
    problem = bind_problem(bind, port)
    if problem is None:
        return CheckResult(True, f"listens on {bind}:{port} ({shown + '; ' if shown != bind else ''}tried)")
    node = running_here()
    if node is not None and _listens(node, {str(address[4][0]) for address in addresses}, port):
        return CheckResult(True, f"{bind}:{port} is the site's running node's ({node}): not tried")
    return CheckResult(False, f"cannot listen on {bind}:{port}: {problem}")


def _listens(node: str, addresses: set[str], port: int) -> bool:
    """Whether the site's running node (``pid N on host H``, this host's) listens on ``port`` at one of
    ``addresses``: only then is a taken port its own (round 22 C-F1: any taken port or foreign address passed as
    the node's, and the restart failed). A node whose sockets cannot be read (another user's) is not assumed."""
    import psutil  # only check asks: a node's own start does not load it

    found = re.match(r"pid (\d+) on host ", node)
    if found is None:
        return False
    try:
        sockets = psutil.Process(int(found.group(1))).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(
        sock.status == psutil.CONN_LISTEN and sock.laddr and sock.laddr.port == port and sock.laddr.ip in addresses
        for sock in sockets
    )


def _sync_result(failed: list[str]) -> CheckResult:
    """The creditor sync's last run: failing while a delivery it could not take waits for the next run."""
    if not failed:
        return CheckResult(True, "no delivery failed in the last run")
    return CheckResult(
        False, f"{len(failed)} deliveries failed in the last run, left for the next: {'; '.join(failed)}"
    )


def _backlog_result(backlog: Backlog) -> CheckResult:
    """Recordings still only on local disk: fine while they wait for the next run, not once they fail."""
    if not backlog.waiting and not backlog.missing:
        return CheckResult(True, "none waiting on local disk")
    detail = f"{backlog.waiting} waiting on local disk"
    detail += f" (oldest found {backlog.oldest:%Y-%m-%d %H:%M}Z)" if backlog.oldest else ""
    if backlog.failing:
        detail += f", {backlog.failing} failing"
    if backlog.missing:
        detail += f", {backlog.missing} missing (the file vanished before it was archived)"
    if backlog.last_error:
        detail += f"; last error: {backlog.last_error}"
    return CheckResult(not backlog.failing and not backlog.missing, detail)
