"""Preview mode (``[campaign] mode = "preview"``): each ready agent is offered the next account the list has for it,
held for that agent alone, and calls it or skips it.

The offer follows the list (:class:`cartera.contact.listing.CallList`): the callbacks due to the agent (its own,
anyone's, others' once released), then the list's order within the agent's granted portfolios. An account offered
to one agent is offered to no other until released: when the agent calls it, skips it (with a reason, audited),
pauses, signs out or closes its page, or after ``hold`` (then the agent is paused ``offer_timeout``). An offer
shows what the pop shows before a call, whom to ask for and the number, nothing of the debt; each is a view of a
debtor's data, audited (``workspace.preview_offer``). Offers are pushed on the hub (``preview_offer``,
``preview_cleared``) to the agent's page alone.

An agent's call (the offer's, or an account it searched) goes through the compliance gate and the dialer, which
connects the answered call to this agent (:meth:`PreviewOffers.dial`); an account the gate refuses is passed over
and the next one offered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from cartera.contact.calls import CallService
from cartera.contact.listing import CallList, Pick, Priority
from cartera.contact.targets import Denied
from cartera.core.audit import AuditLog
from cartera.core.clock import Clock
from cartera.core.config import CampaignConfig
from cartera.core.errors import CarteraError, UsageError
from cartera.core.logs import event as log_event
from cartera.core.models import CallRequest, Channel
from cartera.core.store.database import Database
from cartera.core.store.schema import ContactAttempt
from cartera.portfolio.identity import PortfolioKey, qualified
from cartera.workspace.agents import SIGNED_OUT, AgentState, AgentStatus
from cartera.workspace.errors import WorkspaceError
from cartera.workspace.hub import AGENT_STATE, CALL_ENDED, PREVIEW_CLEARED, PREVIEW_OFFER, WorkspaceEvent, WorkspaceHub

log = logging.getLogger("cartera.workspace")

OFFER_TIMEOUT = "offer_timeout"  #: the pause reason of an agent who let an offer's hold pass
#: Why an agent skips an offered account (the page's choices, audited with the skip).
SKIP_REASONS = ("needs_review", "wrong_data", "knows_debtor", "other")
_PLACING = -1  #: an agent's call being handed to the gate and the dialer, its attempt not known yet


@dataclass(frozen=True)
class Offer:
    """An account offered to ``agent``: whom to ask for and the number to call, nothing of the debt."""

    agent: str
    account_id: int
    account: str  #: ``CREDITOR/PORTFOLIO/REF``
    debtor: str
    phone: str
    callback: bool  #: a callback the debtor asked for
    expires_at: datetime  #: wall-clock time the hold ends

    @property
    def subject(self) -> str:
        """What its audit entries are about."""
        return f"account:{self.account}"

    @property
    def portfolio(self) -> PortfolioKey:
        creditor, code, _ = self.account.split("/", 2)
        return PortfolioKey(creditor, code)

    def as_event(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "account": self.account,
            "debtor": self.debtor,
            "phone": self.phone,
            "callback": self.callback,
            "expires_at": self.expires_at.isoformat(),
        }


class PreviewOffers:
    """One site's offers to its agents (in memory, like the agents' states: a restarted node offers afresh).
    ``now`` is wall-clock time (holds are people's time); ``clock`` the site's, for the list and the store."""

    def __init__(
        self,
        *,
        db: Database,
        audit: AuditLog,
        clock: Clock,
        now: Callable[[], datetime],
        hub: WorkspaceHub,
        listing: CallList,
        calls: CallService,
        campaign: CampaignConfig,
        hold: timedelta,
        skip_rest: timedelta,
    ) -> None:
        self.db, self.audit, self.clock, self._now, self.hub = db, audit, clock, now, hub
        self.listing, self.calls, self.campaign = listing, calls, campaign
        self.hold, self.skip_rest = hold, skip_rest
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  #: agent -> the account reserved for it (offer being built or shown)
        self._shown: dict[str, tuple[Offer, WorkspaceEvent]] = {}  #: agent -> its offer, as published
        #: agent -> its call not connected nor ended yet (its attempt, or _PLACING) and that call's account
        self._dialing: dict[str, tuple[int, int]] = {}
        self._passed: dict[str, dict[int, datetime]] = {}  #: agent -> accounts not offered to it until then
        hub.listen(self._heard)

    @property
    def preview(self) -> bool:
        return self.campaign.mode == "preview"

    def held(self, agent: str) -> WorkspaceEvent | None:
        """The offer on the agent's page now (a page that opens shows it again)."""
        with self._lock:
            shown = self._shown.get(agent)
        return shown[1] if shown else None

    def offer(self, agent: str) -> WorkspaceEvent | None:
        """Offer ``agent`` the next account, when the site is in preview mode and the agent is ready with a page
        open, holds no offer and places no call; the offer it holds if any; ``None``: none to make."""
        status = self._ready(agent)
        if status is None:
            return None
        with self._lock:
            if agent in self._dialing or agent in self._held:
                shown = self._shown.get(agent)
                return shown[1] if shown else None
        now = self.clock.now()
        for pick in self._picks(status, now):
            with self._lock:
                if agent in self._held or agent in self._dialing:
                    return None  # another thread offered meanwhile, or the agent called
                if pick.account_id in self._held.values() or self._passed_over(agent, pick.account_id):
                    continue
                self._held[agent] = pick.account_id
            try:
                offer = self._build(status, pick, now)
            except UsageError as exc:  # no valid number left: nothing the agent could call
                with self._lock:
                    self._held.pop(agent, None)
                    self._pass(agent, pick.account_id)
                log_event(log, "workspace.offer_unusable", account=pick.ref, reason=str(exc))
                continue
            except BaseException:
                with self._lock:
                    self._held.pop(agent, None)
                raise
            published = self.hub.publish(PREVIEW_OFFER, offer.as_event(), agent=agent, portfolio=offer.portfolio)
            with self._lock:
                kept = self._held.get(agent) == pick.account_id
                if kept:
                    self._shown[agent] = (offer, published)
            if not kept:  # released while it was being built (the agent paused, called an account it found)
                self.hub.publish(PREVIEW_CLEARED, {"account_id": offer.account_id, "reason": "withdrawn"}, agent=agent)
                return None
            return published
        return None

    def skip(self, agent: str, account_id: int, reason: str) -> WorkspaceEvent | None:
        """The agent passes over its offer (``reason``: one of :data:`SKIP_REASONS`), audited; returns the next
        offer. The account is not offered to this agent again for ``skip_rest``."""
        if reason not in SKIP_REASONS:
            raise WorkspaceError("reason", f"one of {', '.join(SKIP_REASONS)}")
        with self._lock:
            shown = self._shown.get(agent)
        if shown is None or shown[0].account_id != account_id:
            raise WorkspaceError("account", f"account {account_id} is not offered to {agent} now")
        if self._withdraw(agent, "skipped", passed=True, only=account_id):
            action = "workspace.preview_skip"
            self.audit.write(actor=f"web:{agent}", action=action, subject=shown[0].subject, reason=reason)
        return self.offer(agent)

    def dial(self, agent: str, extension: str, account_id: int, *, actor: str) -> CallRequest:
        """Place the agent's call to ``account_id`` (the one offered to it, at the number shown; or one it found)
        through the gate and the dialer, the answered call connected to ``extension``; its offer is released.
        Raises :class:`WorkspaceError` while the agent has a call on screen or ringing, or for an account offered
        to another agent or being called for one (a paused agent may still call an account it found),
        :class:`~cartera.contact.targets.Denied` (the gate's reason and next allowed time) or :class:`UsageError`
        when it cannot be placed: that account is passed over and the next one offered."""
        status = self.hub.roster.get(agent)
        if status.state in (AgentState.ON_CALL, AgentState.WRAP_UP):
            raise WorkspaceError("account", f"save the disposition of call {status.attempt_id} first")
        with self._lock:
            if agent in self._dialing:
                ringing = self._dialing[agent][0]
                raise WorkspaceError("account", f"call {ringing} is still ringing" if ringing > 0 else "calling")
            if self._taken(account_id, agent):
                raise WorkspaceError("account", f"account {account_id} is held for another agent's call")
            self._dialing[agent] = (_PLACING, account_id)
            shown = self._shown.get(agent)
        phone = shown[0].phone if shown and shown[0].account_id == account_id else None
        self._withdraw(agent, "called")
        held = False
        try:
            self.hub.roster.hold_for_own_call(agent)  # the dialer gives it no other call while this one rings
            held = True
            call = self.calls.place_call(phone=phone, account=account_id, actor=actor, agent=extension)
        except (Denied, UsageError):
            with self._lock:
                self._stop_dialing(agent)
                self._pass(agent, account_id)
            if held:
                self._safely(self.hub.roster.release_own_call, agent)
            self._safely(self.offer, agent)
            raise
        except BaseException:
            with self._lock:
                self._stop_dialing(agent)
            if held:
                self._safely(self.hub.roster.release_own_call, agent)
            raise
        with self._lock:
            if self._dialing.get(agent) == (_PLACING, account_id):  # not connected meanwhile
                self._dialing[agent] = (call.attempt_id, account_id)
        return call

    def signed_out(self, agent: str) -> None:
        """The agent signed out: its offer is released, and a ready agent paused (``signed_out``)."""
        self._withdraw(agent, "signed_out")
        try:
            if self.hub.roster.get(agent).state is AgentState.READY:
                self.hub.roster.pause(agent, SIGNED_OUT)
        except CarteraError as exc:  # never opened the page, or the dialer refused: the sweep pauses it
            log_event(log, "workspace.sign_out_not_paused", logging.WARNING, agent=agent, error=str(exc))

    def sweep(self) -> None:
        """The periodic job: release offers whose agent's pages are all gone, or whose hold passed (audited, the
        agent paused ``offer_timeout``); settle agents' calls that ended unheard; offer the ready agents holding
        none the next account (callbacks come due, accounts become due)."""
        now = self._now()
        with self._lock:
            shown = list(self._shown.values())
            dialing = {agent: attempt for agent, (attempt, _) in self._dialing.items() if attempt > 0}
        for offer, _ in shown:
            status = self._status(offer.agent)
            if status is None or status.pages == 0:
                self._withdraw(offer.agent, "page_gone")
            elif offer.expires_at <= now and self._withdraw(offer.agent, "expired", only=offer.account_id):
                self.audit.write(actor=f"web:{offer.agent}", action="workspace.preview_expired", subject=offer.subject)
                self._safely(self.hub.roster.pause, offer.agent, OFFER_TIMEOUT)
        if dialing:
            with self.db.reading() as session:
                ended = set(
                    session.scalars(
                        select(ContactAttempt.id).where(
                            ContactAttempt.id.in_(dialing.values()), ContactAttempt.state != "placing"
                        )
                    )
                )
            for agent, attempt in dialing.items():
                if attempt in ended:
                    self._call_ended(agent, attempt)
        for status in self.hub.roster.everyone():
            if status.state is AgentState.READY and status.pages:
                self._safely(self.offer, status.agent)

    # --- what the hub tells ---------------------------------------------------------------------

    def _heard(self, event: WorkspaceEvent) -> None:
        """An agent that leaves ready loses its offer (on a call: its call connected); one that becomes ready is
        offered the next account; the end of an agent's call that was never connected offers the next one."""
        if event.kind == AGENT_STATE and event.agent is not None:
            state = event.data.get("state")
            if state == AgentState.READY.value:
                self._safely(self.offer, event.agent)
                return
            if state == AgentState.ON_CALL.value:
                with self._lock:
                    self._stop_dialing(event.agent)
            self._withdraw(event.agent, str(state))
        elif event.kind == CALL_ENDED:
            attempt = event.data.get("attempt_id")
            with self._lock:
                agent = next((name for name, (ringing, _) in self._dialing.items() if ringing == attempt), None)
            if agent is not None and isinstance(attempt, int):
                self._call_ended(agent, attempt)

    def _taken(self, account_id: int, agent: str) -> bool:
        """Under the lock: ``account_id`` is offered to another agent than ``agent``, or being called for one."""
        reserved = (*self._held.items(), *((other, account) for other, (_, account) in self._dialing.items()))
        return any(other != agent and taken == account_id for other, taken in reserved)

    def _stop_dialing(self, agent: str) -> None:
        """Under the lock: the agent's call is connected, ended or was not placed."""
        self._dialing.pop(agent, None)

    def _call_ended(self, agent: str, attempt_id: int) -> None:
        """The agent's call ended without reaching it (not answered, busy, failed): told why, offered the next."""
        with self._lock:
            if agent not in self._dialing or self._dialing[agent][0] != attempt_id:
                return
            self._stop_dialing(agent)
        with self.db.reading() as session:
            outcome = session.scalar(select(ContactAttempt.outcome).where(ContactAttempt.id == attempt_id))
        self.hub.publish(
            PREVIEW_CLEARED, {"attempt_id": attempt_id, "reason": "unanswered", "outcome": outcome}, agent=agent
        )
        self._safely(self.hub.roster.release_own_call, agent)
        self._safely(self.offer, agent)

    # --- offers -----------------------------------------------------------------------------------

    def _ready(self, agent: str) -> AgentStatus | None:
        """The agent's status when it may be offered an account now."""
        if not self.preview:
            return None
        status = self._status(agent)
        if status is None or status.state is not AgentState.READY or not status.pages:
            return None
        return status

    def _status(self, agent: str) -> AgentStatus | None:
        try:
            return self.hub.roster.get(agent)
        except UsageError:  # never opened the page
            return None

    def _picks(self, status: AgentStatus, now: datetime) -> list[Pick]:
        """The list's order for this agent: the callbacks due to it or to anyone within its grants, then the due
        accounts of its granted portfolios."""
        within = self.hub.grants(status.agent)
        listing = self.campaign.listing
        picks = self.listing.queue(now, listing.candidates, self.campaign.max_attempts_per_day, within)
        callbacks = [
            pick
            for pick in picks
            if pick.priority is Priority.CALLBACK and not pick.waiting and pick.agent in (None, status.extension)
        ]
        return callbacks + [pick for pick in picks if pick.priority is not Priority.CALLBACK]

    def _build(self, status: AgentStatus, pick: Pick, now: datetime) -> Offer:
        """The offer of ``pick`` (the number the call would go to: a callback's, else the one the gate would try
        first), audited as a view of the debtor's data."""
        with self.db.reading() as session:
            target = self.calls.targets.find(session, Channel.CALL, pick.phone, pick.account_id, at=now)
            account = target.account
            assert account is not None
            offer = Offer(
                status.agent,
                account.id,
                qualified(account),
                account.debtor.name,
                target.phone,
                pick.priority is Priority.CALLBACK,
                self._now() + self.hold,
            )
        why = pick.priority.name.lower()
        actor = f"web:{status.agent}"
        self.audit.write(
            actor=actor, action="workspace.preview_offer", subject=offer.subject, phone=offer.phone, why=why
        )
        return offer

    def _withdraw(self, agent: str, reason: str, *, passed: bool = False, only: int | None = None) -> bool:
        """Release the agent's offer (``only``: when it is still of that account), its page told ``reason``;
        ``passed``: not offered to it again for ``skip_rest``. Whether there was one."""
        with self._lock:
            shown = self._shown.get(agent)
            if shown is None or (only is not None and shown[0].account_id != only):
                if only is None:
                    self._held.pop(agent, None)  # one being built: dropped once built
                return False
            del self._shown[agent]
            self._held.pop(agent, None)
            if passed:
                self._pass(agent, shown[0].account_id)
        self.hub.publish(PREVIEW_CLEARED, {"account_id": shown[0].account_id, "reason": reason}, agent=agent)
        return True

    def _pass(self, agent: str, account_id: int) -> None:
        """Under the lock: ``account_id`` is not offered to ``agent`` for ``skip_rest``."""
        now = self._now()
        passed = self._passed.setdefault(agent, {})
        for gone in [account for account, until in passed.items() if until <= now]:
            del passed[gone]
        passed[account_id] = now + self.skip_rest

    def _passed_over(self, agent: str, account_id: int) -> bool:
        until = self._passed.get(agent, {}).get(account_id)
        return until is not None and until > self._now()

    def _safely(self, action: Callable[..., object], *args: str) -> None:
        """Run ``action`` for the hub or the sweep: a failure is logged, never raised into the event's publisher."""
        try:
            action(*args)
        except Exception:
            log.exception("workspace: preview offers: %s%s failed", getattr(action, "__name__", action), args)
