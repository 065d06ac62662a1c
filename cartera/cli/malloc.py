"""glibc's malloc tuned for a long-running node: freed buffers go back to the system (docs/operations.md).

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MB), after which buffers
of a recording, an import batch or an archival read come from the threads' heaps and stay there once freed;
each thread's arena keeps its own. A fixed threshold and two arenas keep an idle demo node under 120 MB.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: mallopt parameter -> (value, the environment variable and the GLIBC_TUNABLES name an operator sets it with).
SETTINGS: dict[int, tuple[int, str, str]] = {
    M_MMAP_THRESHOLD: (128 * 1024, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    M_ARENA_MAX: (2, "MALLOC_ARENA_MAX", "glibc.malloc.arena_max"),
}


def tune_malloc(environ: Mapping[str, str] = os.environ) -> dict[int, int]:
    """Apply :data:`SETTINGS` through ``mallopt`` on glibc, each unless the environment sets it; what was set."""
    if not on_glibc():
        return {}
    mallopt = ctypes.CDLL(None).mallopt
    tunables = environ.get("GLIBC_TUNABLES", "")
    applied = {}
    for param, (value, variable, tunable) in SETTINGS.items():
        if variable not in environ and tunable not in tunables and mallopt(param, value) == 1:
            applied[param] = value
    return applied


def on_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False
