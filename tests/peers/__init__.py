"""Real peers for tests: provisioned from scripts/peers (cached), started by tests, stopped by them."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """A peer cannot be had: skip loudly on a developer's machine, fail under CI (``CI`` set), where a skip would
    leave the run green with the peer's plugin untested."""
    message = f"PEER UNAVAILABLE: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
