"""A budget of audit entries for anonymous refused requests (round 16 M3): each refusal of a stranger (an unknown
path, a missing static file, the agent's stream without a session) wrote an audit row, kept forever: one client
added ~250 rows a second. Past :data:`PER_MINUTE` refusals of one address in a minute they are only counted; one
``web.rejected_unaudited`` entry (and log line) a minute says how many went unwritten. Anonymous requests to the
recordings' routes (the player's pages and files) and throttled sign-ins have budgets of their own, so a flood of
other refusals never leaves them unaudited; failures (5xx) are always audited.

The summary is written when its minute ends (round 23 B-F3: it came only with the next stranger's refusal, so a
flood that stopped left no count, and a node stopped before lost it): a timer is set at the minute's first refusal
left unaudited, and what is left is written at the server's stop (:meth:`RefusalAudit.close`).

The budgets are bounded as a whole too (round 21 M3): one host owning many addresses (an IPv6 /64, the clients of a
trusted proxy, 127.x.y.z) had each address's budget, ~580 rows a second. Of each kind at most
:data:`TOTAL_PER_MINUTE` refusals a minute are audited in all, and an IPv6 address counts as its /64."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable

from fastapi import Request

from cartera.core.logs import event
from cartera.web.context import Web, anonymous

PER_MINUTE = 30  #: audit entries of one address's anonymous refusals in one minute
WINDOW_S = 60.0
TOTAL_PER_MINUTE = 300  #: audit entries of all strangers' anonymous refusals of one kind in one minute
IPV6_HOST_PREFIX = 64  #: an IPv6 address's budget is its network's of this prefix (one host owns a /64)
RECORDINGS = "/recordings"  #: anonymous requests to it and below it have a budget of their own
SIGN_IN = "sign-in"  #: the kind of a throttled sign-in's entry, with a budget of its own
log = logging.getLogger("cartera.web")


class AnonymousRefusals:
    """Thread-safe: which anonymous refusals get their audit entry. ``clock`` is monotonic seconds."""

    def __init__(self, per_minute: int = PER_MINUTE, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._window_end = 0.0
        self._written: dict[tuple[str, str], int] = {}  #: this minute's entries by (address or /64, kind)
        self._kinds: dict[str, int] = {}  #: this minute's entries by kind
        self._unwritten = 0
        self._unwritten_actors: set[str] = set()

    def admit(self, actor: str, path: str) -> tuple[bool, tuple[int, int] | None]:
        """Whether ``actor``'s refusal at ``path`` (or of kind :data:`SIGN_IN`) is audited, and, once a minute when
        some went unwritten, the count of refusals and of addresses the last minute left unaudited (to write as one
        summary): it comes with the first refusal after that minute. Each address has a budget per kind: the
        recordings' routes, sign-ins, anything else, and each kind :data:`TOTAL_PER_MINUTE` in all."""
        with self._lock:
            summary = None
            now = self.clock()
            if now >= self._window_end:
                if self._unwritten:
                    summary = (self._unwritten, len(self._unwritten_actors))
                self._window_end, self._written, self._kinds, self._unwritten = now + WINDOW_S, {}, {}, 0
                self._unwritten_actors = set()
            if path == RECORDINGS or path.startswith(f"{RECORDINGS}/"):
                kind = RECORDINGS
            else:
                kind = SIGN_IN if path == SIGN_IN else ""
            key = (_budget_holder(actor), kind)
            written, in_all = self._written.get(key, 0), self._kinds.get(kind, 0)
            if written < self.per_minute and in_all < TOTAL_PER_MINUTE:
                self._written[key], self._kinds[kind] = written + 1, in_all + 1
                return True, summary
            self._unwritten += 1
            if len(self._unwritten_actors) < 1000:  # bounded: a count past it is at least that many
                self._unwritten_actors.add(actor)
            return False, summary

    def window(self) -> tuple[float, float]:
        """The current minute's end and the seconds left until it (by :attr:`clock`)."""
        with self._lock:
            return self._window_end, max(0.0, self._window_end - self.clock())

    def unwritten(self, window_end: float | None = None) -> tuple[int, int] | None:
        """The refusals and addresses left unaudited and not summed up yet, taken (each is in one summary only):
        those of the minute ending at ``window_end`` (``None`` once another began: :meth:`admit` gave them), or
        with ``window_end`` ``None`` those of the current minute so far (at stop); ``None`` when there are none."""
        with self._lock:
            if not self._unwritten or (window_end is not None and window_end != self._window_end):
                return None
            summary = (self._unwritten, len(self._unwritten_actors))
            self._unwritten, self._unwritten_actors = 0, set()
            return summary


def _budget_holder(actor: str) -> str:
    """Whose budget ``actor``'s (``web:anonymous@ADDRESS``) refusal spends: its address, or an IPv6 address's
    /64 network."""
    address = actor.rpartition("@")[2]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return actor
    if parsed.version == 6 and parsed.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_HOST_PREFIX}", strict=False))
    return actor


def _start_timer(delay: float, call: Callable[[], None]) -> None:
    timer = threading.Timer(delay, call)
    timer.daemon = True
    timer.start()


class RefusalAudit:
    """Audits a refused request (``web.rejected``): a known viewer's always, a stranger's within its address's
    :class:`AnonymousRefusals` budget, with the minute's summary of those left unwritten, written when the minute
    ends (``timer(delay, call)`` runs ``call`` ``delay`` seconds later) or at :meth:`close`."""

    def __init__(
        self,
        web: Web,
        budget: AnonymousRefusals | None = None,
        timer: Callable[[float, Callable[[], None]], None] = _start_timer,
    ) -> None:
        self.web = web
        self.budget = budget or AnonymousRefusals()
        self.timer = timer
        self._lock = threading.Lock()
        self._timed: float | None = None  #: the end of the minute a timer is set for

    def __call__(self, request: Request, actor: str | None, status: int, reason: str) -> None:
        """``actor`` None: an anonymous request."""
        if actor is None:
            actor = anonymous(request)
            if not self._admitted(actor, request.url.path):
                return
        self.web.audit(actor, "web.rejected", request.url.path[:200], status=status, reason=reason[:300])

    def throttled_sign_in(self, request: Request, user: str, until: str) -> None:
        """A sign-in refused as its user or address is locked (``web.login_throttled``), within its budget."""
        actor = anonymous(request)
        if self._admitted(actor, SIGN_IN):
            self.web.audit(actor, "web.login_throttled", f"user:{user}"[:200], until=until)

    def close(self) -> None:
        """Write the summary of the refusals left unaudited so far (the server stops)."""
        self._write_quietly(self.budget.unwritten())

    def _admitted(self, actor: str, kind: str) -> bool:
        admitted, summary = self.budget.admit(actor, kind)
        if summary is not None:
            self._write(summary)
        if not admitted:
            self._summary_at_minutes_end()
        return admitted

    def _summary_at_minutes_end(self) -> None:
        end, left = self.budget.window()
        with self._lock:
            if self._timed == end:
                return
            self._timed = end
        self.timer(left, lambda: self._minute_ended(end))

    def _minute_ended(self, end: float) -> None:
        with self._lock:
            if self._timed == end:
                self._timed = None
        self._write_quietly(self.budget.unwritten(end))

    def _write_quietly(self, summary: tuple[int, int] | None) -> None:
        """:meth:`_write` off any request (a timer, the stop): a store that fails is logged, never raised."""
        try:
            self._write(summary)
        except Exception as exc:
            event(log, "web.audit_failed", logging.ERROR, path="anonymous refusals", error=type(exc).__name__)

    def _write(self, summary: tuple[int, int] | None) -> None:
        if summary is None:
            return
        count, addresses = summary
        event(log, "web.rejected_unaudited", logging.WARNING, count=count, addresses=addresses)
        self.web.audit("web", "web.rejected_unaudited", "anonymous refusals", count=count, addresses=addresses)
