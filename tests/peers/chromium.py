"""Debian's Chromium for Playwright: chrooted in a Debian-unstable root, started through a wrapper executable.

Playwright's bundled browser download does not work here, so ``chromium()`` builds (once, cached) a root with
``chromium`` and a font, bind-mounts /proc and /dev into it, and writes a wrapper that runs
``chroot ROOT /usr/bin/chromium "$@"``: ``exec`` keeps the pipe descriptors Playwright talks over
(``--remote-debugging-pipe``). Playwright's temporary files (profile, downloads) go to a directory inside the
root, and a symlink inside the root maps that host path onto itself, so both sides see the same paths.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.peers.debian import _bind_mounts, debian_root

PACKAGES = ("chromium", "fonts-dejavu-core")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


@contextmanager
def chromium() -> Iterator[Path]:
    """The wrapper executable to give Playwright as ``executable_path``, usable while the context lasts.
    Sets ``TMPDIR`` (read by the Playwright driver when it starts) to a directory inside the root."""
    root = debian_root("chromium", PACKAGES)
    mirror = root / str(root).lstrip("/")  # inside the chroot, the host path of the root leads back to "/"
    if not mirror.is_symlink():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        mirror.symlink_to("/")
    scratch = Path(tempfile.mkdtemp(prefix="cartera-browser-", dir=root / "tmp"))
    wrapper = scratch / "chromium"
    # chromium's own temporary files (its singleton socket path is short-limited) go to the root's /tmp
    command = f'exec chroot {shlex.quote(str(root))} /usr/bin/env TMPDIR=/tmp /usr/bin/chromium "$@"'
    wrapper.write_text(f"#!/bin/sh\n{command}\n")
    wrapper.chmod(0o755)
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(scratch)
    try:
        with _bind_mounts(root):
            yield wrapper
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
