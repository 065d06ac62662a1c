"""The queue's members as AMI lists them; a listing Cartera cannot read is refused with a clear message."""

from __future__ import annotations

import pytest

from cartera.plugins.dialers.asterisk_ami.agents import AgentPool
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
