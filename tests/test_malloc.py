"""The node's malloc tuning: mallopt on glibc at the start of ``run``, never over an operator's MALLOC_* setting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cartera.cli import main as cli
from cartera.cli import malloc
from cartera.cli.malloc import M_ARENA_MAX, M_MMAP_THRESHOLD, tune_malloc


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> FakeLibc:
    fake = FakeLibc()
    monkeypatch.setattr(malloc, "on_glibc", lambda: True)
    monkeypatch.setattr("ctypes.CDLL", lambda _name: fake)
    return fake


def test_on_glibc_both_settings_are_applied(libc: FakeLibc) -> None:
    assert tune_malloc({}) == {M_MMAP_THRESHOLD: 128 * 1024, M_ARENA_MAX: 2}
    assert libc.calls == [(M_MMAP_THRESHOLD, 128 * 1024), (M_ARENA_MAX, 2)]


@pytest.mark.parametrize(
    ("environ", "kept"),
    [
        ({"MALLOC_ARENA_MAX": "8"}, M_MMAP_THRESHOLD),
        ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, M_ARENA_MAX),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, M_ARENA_MAX),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=1:glibc.malloc.check=0"}, M_MMAP_THRESHOLD),
    ],
)
def test_an_operators_setting_wins(libc: FakeLibc, environ: dict[str, str], kept: int) -> None:
    assert list(tune_malloc(environ)) == [kept]
    assert [param for param, _value in libc.calls] == [kept]


def test_elsewhere_nothing_is_called(libc: FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "on_glibc", lambda: False)
    assert tune_malloc({}) == {}
    assert libc.calls == []


def test_the_real_mallopt_accepts_the_settings() -> None:
    if not malloc.on_glibc():
        pytest.skip("not glibc")
    assert tune_malloc({}) == {M_MMAP_THRESHOLD: 128 * 1024, M_ARENA_MAX: 2}


class Opened(Exception):
    pass


@pytest.mark.parametrize(("command", "tuned"), [("run", True), (None, True), ("check", False)])
def test_only_the_run_command_tunes_malloc(monkeypatch: pytest.MonkeyPatch, command: str | None, tuned: bool) -> None:
    calls: list[str] = []
    monkeypatch.setattr(cli, "tune_malloc", lambda: calls.append("tuned"))

    def open_node(_config: Path, _site: str) -> None:
        calls.append("opened")
        raise Opened

    monkeypatch.setattr("cartera.node.Node.open", open_node)
    with pytest.raises(Opened):
        cli._dispatch(argparse.Namespace(command=command, site="t", config=Path("sites.toml")))
    assert calls == (["tuned", "opened"] if tuned else ["opened"])
