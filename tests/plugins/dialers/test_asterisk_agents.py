"""The queue's members as AMI lists them; a listing Cartera cannot read is refused with a clear message."""

from __future__ import annotations

from datetime import datetime

import pytest

from cartera.core.clock import SystemClock
from cartera.core.models import CallRequest
from cartera.plugins.dialers.asterisk_ami.agents import AgentPool
from cartera.plugins.dialers.asterisk_ami.calls import CallTracker
from cartera.plugins.dialers.asterisk_ami.client import AmiNotManager

MEMBER = {
    "Event": "QueueMember",
    "Queue": "cobranza",
    "Name": "a1",
    "Location": "PJSIP/a1",
    "Status": "1",
    "Paused": "0",
}


def test_members_are_read_by_their_location() -> None:
    pool = AgentPool("cobranza")
    pool.reset([MEMBER, {**MEMBER, "Location": "PJSIP/a2", "Paused": "1"}, {**MEMBER, "Queue": "other"}])
    assert (pool.members, pool.available) == (2, 1)


@pytest.mark.abuse
@pytest.mark.parametrize("missing", ["Location", "Status", "Paused"])
def test_a_member_without_a_field_is_refused_naming_it(missing: str) -> None:
    event = {name: value for name, value in MEMBER.items() if name != missing}
    with pytest.raises(AmiNotManager, match=f"member of queue 'cobranza' without {missing}"):
        AgentPool("cobranza").reset([event])


def test_a_pause_asterisk_accepted_counts_before_its_event() -> None:
    pool = AgentPool("cobranza")
    pool.reset([MEMBER, {**MEMBER, "Location": "PJSIP/a2"}])
    pool.pause("PJSIP/a1", paused=True)
    assert ("PJSIP/a1" in pool, "PJSIP/a3" in pool, pool.available) == (True, False, 1)
    pool.pause("PJSIP/a1", paused=False)
    assert pool.available == 2


def test_the_queues_connection_is_reported_once_naming_the_members_interface() -> None:
    connected: list[tuple[int, str | None, datetime]] = []
    tracker = CallTracker(
        SystemClock(),
        on_end=lambda _: None,
        hang_up=lambda _: None,
        on_connect=lambda call, at: connected.append((call.request.attempt_id, call.agent, at)),
    )
    call = tracker.admit(CallRequest(attempt_id=7, site="t", phone="+573005550001"), "cartera-t-7-abc")
    assert call is not None
    connect = {"Event": "AgentConnect", "Uniqueid": "cartera-t-7-abc", "Interface": "PJSIP/a1", "MemberName": "Ana"}
    tracker.on_agent_connect({**connect, "Uniqueid": "someone-else"})
    assert connected == []
    tracker.on_agent_connect(connect)
    tracker.on_agent_connect(connect)  # Asterisk repeating itself: one connection
    ((attempt, agent, at),) = connected
    assert (attempt, agent) == (7, "PJSIP/a1")
    assert call.answered_at is not None
    assert call.answered_at <= at
