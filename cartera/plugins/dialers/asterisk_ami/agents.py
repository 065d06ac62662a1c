"""The agents of one queue, as AMI reports them: who is logged in, paused, or unreachable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cartera.plugins.dialers.asterisk_ami.client import AmiNotManager, Message

#: Device states of a member that cannot take a call: AST_DEVICE_INVALID and AST_DEVICE_UNAVAILABLE.
UNREACHABLE_STATUSES = frozenset({"4", "5"})
#: Events that change a member (all carry ``Queue`` and ``Interface``), but for its removal.
MEMBER_EVENTS = ("QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded")
MEMBER_REMOVED = "QueueMemberRemoved"
#: Fields of a ``QueueMember`` event the pool reads.
MEMBER_FIELDS = ("Location", "Status", "Paused")


@dataclass(frozen=True)
class Member:
    name: str
    status: str
    paused: bool

    @property
    def available(self) -> bool:
        return not self.paused and self.status not in UNREACHABLE_STATUSES


class AgentPool:
    """Members of ``queue`` by interface; not thread-safe (the dialer guards it with its lock)."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._members: dict[str, Member] = {}

    def reset(self, status_events: Iterable[Message]) -> None:
        """Replace the members with those a ``QueueStatus`` listed (its ``QueueMember`` events)."""
        members = [
            event for event in status_events if event.get("Event") == "QueueMember" and event.get("Queue") == self.queue
        ]
        for event in members:
            missing = [name for name in MEMBER_FIELDS if name not in event]
            if missing:
                raise AmiNotManager(
                    f"the PBX listed a member of queue {self.queue!r} without {', '.join(missing)} "
                    f"(QueueStatus must give {', '.join(MEMBER_FIELDS)}, as Asterisk's app_queue does)"
                )
        self._members = {
            event["Location"]: Member(event.get("Name", event["Location"]), event["Status"], event["Paused"] == "1")
            for event in members
        }

    def update(self, event: Message) -> None:
        """Apply one of :data:`MEMBER_EVENTS`."""
        if event.get("Queue") != self.queue or "Interface" not in event:
            return
        interface = event["Interface"]
        known = self._members.get(interface)
        self._members[interface] = Member(
            name=event.get("MemberName") or (known.name if known else interface),
            status=event.get("Status") or (known.status if known else "0"),
            paused=event["Paused"] == "1" if "Paused" in event else bool(known and known.paused),
        )

    def pause(self, interface: str, *, paused: bool) -> None:
        """What a QueuePause Asterisk accepted did, before its QueueMemberPause event arrives."""
        member = self._members[interface]
        self._members[interface] = Member(member.name, member.status, paused)

    def __contains__(self, interface: str) -> bool:
        return interface in self._members

    def remove(self, event: Message) -> None:
        """Apply a :data:`MEMBER_REMOVED` event."""
        if event.get("Queue") == self.queue:
            self._members.pop(event.get("Interface", ""), None)

    @property
    def available(self) -> int:
        """Members who can take a call: logged in, not paused, their device reachable."""
        return sum(member.available for member in self._members.values())

    @property
    def members(self) -> int:
        return len(self._members)
