"""Files a creditor may still be writing: read only once settled.

Many creditors (OpenSSH's ``sftp put``, scripts, ERPs) write a file under its final name, so an inbox can list a
file whose upload is under way, or stalled: read then, its last row is cut (a balance of 1,250,000 read as 12) and
it is archived while the rest is still being written. The ``csv`` and ``sftp_csv`` plugins read a file only once
it is *settled*: listed with the same size and modification time for ``settle_seconds`` of the node's monotonic
clock, or (a local file, whose time is the node's own clock's) modified at least ``settle_seconds`` ago. A file
not settled yet is left for a later sync, logged once (INFO), never an error. The sure way for a creditor is to
upload under a temporary name (``.part``, not matching the pattern) and rename it once complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Annotated

from pydantic import Field

from cartera.core.logs import event

DEFAULT_SETTLE_SECONDS = 10.0

SettleSeconds = Annotated[
    float,
    Field(
        ge=0,
        le=86400,
        description="Seconds a file must stay unchanged (size and modification time, as listed) before it is read, "
        "so one still being uploaded under its final name is not read cut; a local (csv) file modified that long "
        "ago by the node's clock is read at once. 0: read as soon as listed (for creditors that upload under a "
        "temporary name and rename).",
    ),
]
"""The ``settle_seconds`` setting, one definition for ``csv`` and ``sftp_csv`` (default 10 s)."""


class Settling:
    """Which files of an inbox are settled: each file's size and modification time as first listed, and when
    (``monotonic``, seconds). A file not settled is logged once (``settling_event``, INFO) until it settles or
    changes again."""

    def __init__(
        self,
        seconds: float,
        log: logging.Logger,
        settling_event: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self._log = log
        self._event = settling_event
        self._monotonic = monotonic
        self._seen: dict[str, tuple[object, float]] = {}  #: source -> (size and mtime listed, first listed at)
        self._said: set[str] = set()  #: sources logged as settling and not settled since

    def settled(self, source: str, size: int, mtime: float, *, age: float | None = None) -> bool:
        """Whether ``source``, listed now with ``size`` and ``mtime``, may be read: it was listed with them at
        least ``seconds`` ago, or its ``age`` (now minus its modification time, by the node's clock, for a local
        file) is at least ``seconds``."""
        if self.seconds <= 0:
            return True
        now = self._monotonic()
        listed = (size, mtime)
        seen = self._seen.get(source)
        if seen is None or seen[0] != listed:
            seen = self._seen[source] = (listed, now)
        if (age is not None and age >= self.seconds) or now - seen[1] >= self.seconds:
            self._said.discard(source)
            return True
        if source not in self._said:
            self._said.add(source)
            event(self._log, self._event, file=source, size=size, settle_seconds=self.seconds)
        return False

    def forget_unlisted(self, listed: Collection[str]) -> None:
        """Forget the files no longer listed (moved away, removed, renamed)."""
        self._seen = {source: seen for source, seen in self._seen.items() if source in listed}
        self._said &= set(listed)
