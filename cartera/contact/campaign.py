"""The campaign tick: pick accounts that are due, up to the dialer's capacity, and call them."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cartera.contact.calls import CallService
from cartera.contact.listing import CallList, Pick
from cartera.contact.pace import Pace
from cartera.contact.sms_templates import REMINDER
from cartera.contact.targets import Denied
from cartera.contact.texts import TextService
from cartera.core.adapters import Dialer
from cartera.core.clock import Clock
from cartera.core.config import CampaignConfig
from cartera.core.errors import CarteraError, UsageError
from cartera.core.logs import event
from cartera.core.store.database import Database
from cartera.core.store.schema import Account

log = logging.getLogger("cartera.campaign")


class Campaign:
    def __init__(
        self,
        *,
        site: str,
        zone: ZoneInfo,
        db: Database,
        calls: CallService,
        texts: TextService,
        dialer: Dialer[Any],
        clock: Clock,
        config: CampaignConfig,
        listing: CallList,
        pace: Pace,
    ) -> None:
        """``listing`` orders the due accounts (:mod:`cartera.contact.listing`), ``pace`` says how many to call."""
        self.site, self.zone, self.db, self.calls, self.texts = site, zone, db, calls, texts
        self.dialer, self.clock, self.config, self.listing, self.pace = dialer, clock, config, listing, pace
        self._paused = threading.Event()

    def pause(self) -> None:
        """Place no new calls from now on (shutdown)."""
        self._paused.set()

    def tick(self) -> int:
        """Cancel the calls in flight of accounts withdrawn or paid meanwhile, then place calls to due accounts,
        in the list's order, as many as the mode's pacing wants within the dialer's capacity; returns how many were
        placed. In ``preview`` mode it places none: the agents place them."""
        self.calls.cancel_closed_calls(actor="campaign")
        placed = 0
        if self._paused.is_set() or self.config.mode == "preview":
            return placed
        capacity = self.pace.calls_to_place(self.dialer.capacity())
        if capacity <= 0:
            return placed
        now = self.clock.now()
        due, unreached = self._due_accounts(now, max(capacity, self.config.listing.candidates))
        for account_id, ref in unreached:
            if self._paused.is_set():  # stopping: each text may take its gateway's whole timeout
                event(log, "campaign.reminder_not_sent", account=ref, reason="the node is stopping")
                continue
            self._remind(account_id, ref)
        ordered = [pick for pick in self.listing.order(due, now) if not pick.waiting]
        picks = ordered[:capacity]
        self.pace.upcoming(pick.segment for pick in ordered[capacity:])
        for pick in picks:
            if self._paused.is_set():
                break
            placed += self._place(pick, now)
        return placed

    def _place(self, pick: Pick, now: datetime) -> bool:
        try:
            self.calls.place_call(phone=pick.phone, account=pick.account_id, agent=pick.agent, actor="campaign")
        except Denied as denied:
            event(log, "campaign.deferred", account=pick.ref, reason=str(denied))
            return False
        except UsageError as problem:  # e.g. no valid phone left: try again tomorrow, after a new assignment
            self._defer_until_tomorrow(pick.account_id, now)
            event(log, "campaign.skipped", logging.WARNING, account=pick.ref, reason=str(problem))
            return False
        self.listing.placed(pick)
        event(log, "campaign.picked", account=pick.ref, why=pick.why, agent=pick.agent)
        return True

    def _remind(self, account_id: int, ref: str) -> None:
        """Text a debtor whom today's calls did not reach (the gate decides whether that is allowed): the
        portfolio's ``reminder`` SMS template when the site has one, else ``campaign.reminder_sms``."""
        try:
            rendered = self.texts.render_sms(REMINDER, account_id)
            text = rendered.text if rendered else self.config.reminder_sms.replace("{account}", ref)
            if text:
                self.texts.send_sms(phone=None, text=text, account=account_id, actor="campaign")
        except CarteraError as refused:  # denied by the gate, no phone left, a template problem
            event(log, "campaign.reminder_not_sent", account=ref, reason=str(refused))

    def _day_start(self, now: datetime) -> datetime:
        return datetime.combine(now.astimezone(self.zone).date(), time.min, self.zone)

    def _defer_until_tomorrow(self, account_id: int, now: datetime) -> None:
        with self.db.session() as session:
            session.get_one(Account, account_id).next_contact_at = self._day_start(now) + timedelta(days=1)

    def _due_accounts(self, now: datetime, limit: int) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """Accounts to call now (at most ``limit``), and those whose attempts for today just ran out
        without reaching the debtor (they rest until tomorrow)."""
        day_start = self._day_start(now)
        rows = self.listing.pool(now, day_start, limit * 4)
        with self.db.session() as session:
            due: list[tuple[int, str]] = []
            unreached: list[tuple[int, str]] = []
            tomorrow = day_start + timedelta(days=1)
            for row in rows:
                if row.tries_today >= self.config.max_attempts_per_day:
                    session.get_one(Account, row.account_id).next_contact_at = tomorrow
                    if not row.answered_today:
                        unreached.append((row.account_id, row.ref))
                elif len(due) < limit:
                    due.append((row.account_id, row.ref))
        return due, unreached
