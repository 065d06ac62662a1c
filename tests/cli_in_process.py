"""The command line run inside the test process, as a fresh process would run it, without paying a process's start.

A ``run_site.py`` process spends about 2 CPU-seconds importing the node before it does anything; the tests ran
hundreds of them. Here a command sees what a fresh process sees (the working directory, the environment, empty
stdin, no secret registered yet) and leaves the test process as it found it (logging, the SIGPIPE disposition,
the registered secrets). Its output is taken from file descriptors 1 and 2, so whatever reaches them (Python's
streams, C code, child processes) is in it, in the order written. Tests about the process itself (signals, a
kill -9, the site lock held by another process, exit at the end of ``run``) run ``run_site.py`` as a process.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from cartera.cli.main import main
from cartera.core import redaction

#: The loggers whose level :func:`cartera.core.logs.configure` sets (the root logger is "").
_CONFIGURED_LOGGERS = ("", "apscheduler", "botocore", "urllib3", "alembic")


def run_cli(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``run_site.py ARGV`` run from ``cwd`` with ``env`` added to the environment and stdin empty: its exit code
    and what it wrote to stdout and stderr, as :func:`subprocess.run` with ``text=True`` returns them."""
    stdout, stderr = _Output(), _Output()
    with _fresh_process_state(cwd, env), _captured(1, stdout), _captured(2, stderr):
        try:
            code = main(list(argv))
        except SystemExit as exit:  # argparse's usage errors and --help
            code = _exit_status(exit)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    return subprocess.CompletedProcess(["run_site.py", *argv], code, stdout.text, stderr.text)


def _exit_status(exit: SystemExit) -> int:
    """The status a process ends with on ``exit``: its code, or 1 after printing a message (as the interpreter)."""
    if exit.code is None or isinstance(exit.code, int):
        return exit.code or 0
    print(exit.code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _fresh_process_state(cwd: Path, env: Mapping[str, str] | None) -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in _CONFIGURED_LOGGERS}
    sigpipe = signal.getsignal(signal.SIGPIPE)
    umask = os.umask(0o022)  # main() tightens the umask it inherits: restored after
    os.umask(umask)
    try:
        with pytest.MonkeyPatch.context() as patch, open(os.devnull, encoding="utf-8") as stdin:
            patch.chdir(cwd)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            patch.setattr(sys, "stdin", stdin)
            patch.setattr(redaction._site, "_forms", set())  # a fresh process has registered no secret yet
            patch.setattr(redaction._site, "_pattern", None)
            yield
    finally:
        signal.signal(signal.SIGPIPE, sigpipe)
        os.umask(umask)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class _Output:
    """What a command wrote to one file descriptor, once it is done."""

    text = ""


@contextlib.contextmanager
def _captured(fd: int, output: _Output) -> Iterator[None]:
    """File descriptor ``fd`` (1 or 2) goes to a temporary file, and ``sys.stdout`` or ``sys.stderr`` to ``fd``,
    as in a process whose output is a pipe; what was written ends in ``output``."""
    name = "stdout" if fd == 1 else "stderr"
    with tempfile.TemporaryFile() as file:
        saved = os.dup(fd)
        os.dup2(file.fileno(), fd)
        stream = io.TextIOWrapper(
            io.FileIO(fd, "w", closefd=False),
            encoding="utf-8",
            errors="strict" if fd == 1 else "backslashreplace",
            write_through=True,
        )
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(sys, name, stream)
                yield
        finally:
            stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            file.seek(0)
            output.text = io.TextIOWrapper(file, encoding="utf-8").read()  # newlines translated, as text=True does
