"""The PBX's recording spool (Asterisk's ``monitor/``): which files are finished and may be archived."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SpoolFile:
    path: Path
    size: int
    started_at: datetime
    duration_s: float


class SpoolSource:
    """Files under ``directory`` matching ``patterns``, finished once unmodified for ``quiet_period_s``.

    A file being recorded grows (and its mtime moves) until the PBX closes it; one whose mtime is older than
    the quiet period has kept its size that long, so it is done. The test needs no state, so a restart or a
    backfill of an old spool qualifies every old file at once. Times are real (file system) seconds.
    """

    def __init__(self, directory: Path, patterns: tuple[str, ...], quiet_period_s: float) -> None:
        self.directory = directory
        self.patterns = patterns
        self.quiet_period_s = quiet_period_s

    def finished(self, now: float | None = None) -> Iterator[SpoolFile]:
        """Finished files, in path order; files that vanish or cannot be read meanwhile are left for later."""
        if not self.directory.is_dir():
            return
        cutoff = (time.time() if now is None else now) - self.quiet_period_s
        for path in sorted(self._candidates()):
            try:
                info = path.stat()
            except OSError:
                continue
            if info.st_mtime > cutoff:
                continue
            ended = datetime.fromtimestamp(info.st_mtime, UTC)
            duration = _wav_seconds(path)
            yield SpoolFile(path, info.st_size, ended - timedelta(seconds=duration), duration)

    def _candidates(self) -> Iterator[Path]:
        for folder, directories, files in os.walk(self.directory):
            directories[:] = [name for name in directories if not name.startswith(".")]
            for name in files:
                if not name.startswith(".") and any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
                    yield Path(folder, name)


def _wav_seconds(path: Path) -> float:
    """Duration of a PCM WAV file from its header; 0 for other formats or unreadable headers."""
    if path.suffix.lower() != ".wav":
        return 0.0
    with contextlib.suppress(wave.Error, EOFError, OSError), wave.open(str(path), "rb") as audio:
        rate = audio.getframerate()
        return audio.getnframes() / rate if rate else 0.0
    return 0.0
