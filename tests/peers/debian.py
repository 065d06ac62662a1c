"""Debian-unstable roots (scripts/peers/debian-root.sh) and servers run chrooted inside them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.peers import unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "peers" / "debian-root.sh"
PROVISION_TIMEOUT_S = 1500


def debian_root(name: str, packages: Sequence[str]) -> Path:
    """The cached root ``name`` with ``packages`` installed, built on first use; skips loudly when impossible."""
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        unavailable(f"{name}: building a Debian root needs root and chroot")
    try:
        done = subprocess.run(
            [str(SCRIPT), name, *packages], capture_output=True, text=True, timeout=PROVISION_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        unavailable(f"{name}: provisioning took over {PROVISION_TIMEOUT_S}s")
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        unavailable(f"{name}: {SCRIPT.name} failed ({done.returncode}): {tail}")
    return Path(done.stdout.strip().splitlines()[-1])


class ChrootedHome:
    """Mixin of a peer running in Debian root ``root``: its working directory ``/srv/cartera/NAME`` there."""

    root: Path
    name: str

    @property
    def inner(self) -> str:
        """The directory as the chrooted server sees it."""
        return f"/srv/cartera/{self.name}"

    @property
    def home(self) -> Path:
        """The same directory as the host sees it."""
        return self.root / self.inner.lstrip("/")


_mount_users: dict[Path, int] = {}
_mount_lock = threading.Lock()


@contextmanager
def _bind_mounts(root: Path) -> Iterator[None]:
    """/proc and /dev inside ``root``, shared by every server running there (e.g. Asterisk and sipp):
    mounted by the first, unmounted when the last one stops."""
    with _mount_lock:
        if _mount_users.get(root, 0) == 0:
            for source in ("/proc", "/dev"):
                target = root / source.lstrip("/")
                target.mkdir(exist_ok=True)
                if subprocess.run(["mountpoint", "-q", str(target)], check=False).returncode != 0:
                    subprocess.run(["mount", "--bind", source, str(target)], check=True)
        _mount_users[root] = _mount_users.get(root, 0) + 1
    try:
        yield
    finally:
        with _mount_lock:
            _mount_users[root] -= 1
            if _mount_users[root] == 0:
                for source in ("/dev", "/proc"):
                    subprocess.run(["umount", "-l", str(root / source.lstrip("/"))], check=False)


@contextmanager
def chrooted(
    root: Path, argv: Sequence[str], *, user: str | None = None, log: Path | None = None, stop_timeout: float = 15
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` inside ``root`` (as ``user``), with /proc and /dev bind-mounted; stopped and unmounted after."""
    command = ["chroot", *([f"--userspec={user}:{user}"] if user else []), str(root), *argv]
    with ExitStack() as stack:
        stack.enter_context(_bind_mounts(root))
        output = stack.enter_context(log.open("ab")) if log else subprocess.DEVNULL
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            stop(process, stop_timeout)


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
