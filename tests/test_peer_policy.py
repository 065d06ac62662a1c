"""A peer that cannot be had skips its tests on a developer's machine and fails them under CI."""

from __future__ import annotations

import pytest

from tests.peers import unavailable


def test_a_missing_peer_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PEER UNAVAILABLE: asterisk: no root"):
        unavailable("asterisk: no root")


def test_a_missing_peer_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PEER UNAVAILABLE: asterisk: no root"):
        unavailable("asterisk: no root")
