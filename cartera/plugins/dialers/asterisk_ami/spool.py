"""Asterisk's recording spool (``monitor/``) as this node sees it: the finished recordings no call reports.

A call's recording is reported by the call's own report, with its attempt and agent. The watcher finds the
others once they are finished: those of a killed run's calls that ended while no node watched (by the attempt
in their UNIQUEID, so they keep their attempt), those whose call gave up waiting for them, and, when
``spool_patterns`` names any, every other finished file matching them (recordings made outside Cartera, a
spool from before it). Files of calls in progress are left to their calls. Only regular files are reported: a
symlink, FIFO or device is never read, and is named once in a warning. So is a file whose name is not UTF-8 (a
dialplan naming recordings from caller data, a Latin-1 ``Jos\xe9``): no store keeps such a path, and it once
stopped every scan at that file (round 21 C-F12); the rule is the creditor files' (``is_keepable_name``).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cartera.plugin import FirstTime, PluginContext, event, is_keepable_name, shown_name
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.recordings import finished, spooled

#: Random bytes of a run's token, written in hex at the end of its calls' UNIQUEIDs and recording names.
TOKEN_BYTES = 3


@dataclass(frozen=True)
class _Awaited:
    """A recording expected in the spool: files named ``pattern`` (a glob) written since ``since`` (a POSIX
    time: an older file is another call's), reported with ``attempt_id``."""

    pattern: str
    attempt_id: int
    since: float = 0.0


class SpoolWatcher:
    """Scans ``spool_dir`` at start and every ``spool_scan_s`` seconds; reports each finished file once per run
    (core's catalog ignores a second report of a path, so a restart reporting a file again is harmless)."""

    def __init__(self, config: AsteriskAmiConfig, context: PluginContext, prefix: str) -> None:
        self._config, self._context, self._prefix = config, context, prefix
        self._lock = threading.Lock()
        self._reported: set[Path] = set()
        self._calls: set[Path] = set()  #: recordings of calls in progress: their calls report them
        self._awaited: set[_Awaited] = set()
        self._first_irregular = FirstTime()  #: files that are not regular are warned about once
        self._first_not_utf8 = FirstTime()  #: so are files whose name is not UTF-8
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="asterisk-spool", daemon=True)

    def recording_path(self, uniqueid: str) -> Path:
        """Where MixMonitor writes the recording of the call ``uniqueid``."""
        return self._config.spool_dir / self._config.recording_name.format(uniqueid=uniqueid)

    def call_started(self, path: Path) -> None:
        """Leave ``path`` to its call's report."""
        with self._lock:
            self._calls.add(path)

    def call_ended(self, path: Path, attempt_id: int, *, reported: bool) -> None:
        """The call's report is done; unless it reported ``path``, the scans do, with ``attempt_id``, once it
        is finished."""
        with self._lock:
            self._calls.discard(path)
            if reported:
                self._reported.add(path)
            else:
                self._awaited.add(_Awaited(path.name, attempt_id))

    def left_by_a_killed_run(self, attempt_id: int, requested_at: datetime) -> None:
        """The call of ``attempt_id`` (requested at ``requested_at`` by a killed run, whatever its token) ended
        while no node watched: its recording, if any, is reported."""
        # the run's token exactly, never ``*``: site bogota's attempt 2 is no prefix of site bogota-2's recordings
        token = "[0-9a-f]" * (2 * TOKEN_BYTES)
        pattern = self._config.recording_name.format(uniqueid=f"{self._prefix}-{attempt_id}-{token}")
        with self._lock:
            self._awaited.add(_Awaited(pattern, attempt_id, requested_at.timestamp()))
        self._wake.set()

    def scan(self, now: float | None = None) -> int:
        """Report the finished files not reported yet; returns how many. Files that cannot be read or are
        still written are left for a later scan; an awaited recording with no file at all is not awaited."""
        count = 0
        with self._lock:
            awaited = list(self._awaited)
        for expected in awaited:
            matches = sorted(
                path for path in self._config.spool_dir.glob(expected.pattern) if _written_since(path, expected.since)
            )
            count += sum(self._report(path, now, expected.attempt_id) for path in matches)
            with self._lock:
                if all(path in self._reported for path in matches):  # none (not answered), or all reported
                    self._awaited.discard(expected)
        seen = set(self._candidates()) if self._config.spool_patterns else set()
        count += sum(self._report(path, now, None) for path in sorted(seen))
        with self._lock:  # remembered only while a scan could find them again: no file is reported twice
            self._reported = {
                path
                for path in self._reported
                if path in seen or any(fnmatch.fnmatchcase(path.name, wanted.pattern) for wanted in self._awaited)
            }
        if count:
            event(self._context.log, "asterisk.spool_found", directory=str(self._config.spool_dir), recordings=count)
        return count

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _report(self, path: Path, now: float | None, attempt_id: int | None) -> bool:
        """Report ``path`` if it is finished and was not reported yet (nor is left to its call); ``True`` if so."""
        with self._lock:
            if path in self._reported or path in self._calls:
                return False
        if not self._regular(path) or not self._utf8(path):
            return False
        info = finished(path, self._config.quiet_period_s, now)
        if info is None:
            return False
        self._context.report_recording(spooled(path, info, attempt_id))
        with self._lock:
            self._reported.add(path)
        return True

    def _regular(self, path: Path) -> bool:
        """Whether ``path`` is a regular file (not followed if a symlink); the first time it is not, says so."""
        try:
            if stat.S_ISREG(path.lstat().st_mode):
                return True
        except OSError:  # gone: nothing to warn about
            return False
        if self._first_irregular(path):
            self._context.log.warning("not a regular file, left alone: %s", path)
        return False

    def _utf8(self, path: Path) -> bool:
        """Whether ``path``'s name is UTF-8; the first time it is not, says so, the name escaped."""
        if is_keepable_name(str(path)):
            return True
        if self._first_not_utf8(path):
            event(self._context.log, "asterisk.spool_name_not_utf8", logging.WARNING, file=shown_name(str(path)))
        return False

    def _watch(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                self.scan()
            except Exception:  # the next scan retries; the calls' own reports go on meanwhile
                self._context.log.exception("scanning the spool %s failed", self._config.spool_dir)
            self._wake.wait(max(0.0, self._config.spool_scan_s - (time.monotonic() - started)))
            self._wake.clear()

    def _candidates(self) -> Iterator[Path]:
        """Files under the spool matching ``spool_patterns``, hidden files and folders left out."""
        patterns = self._config.spool_patterns
        for folder, directories, files in os.walk(self._config.spool_dir):
            directories[:] = [name for name in directories if not name.startswith(".")]
            for name in files:
                if not name.startswith(".") and any(fnmatch.fnmatchcase(name, p) for p in patterns):
                    yield Path(folder, name)


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.lstat().st_mtime >= since
    except OSError:
        return False
