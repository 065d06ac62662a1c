"""Checks of what every kind's adapter declares, shared by the conformance suites."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cartera.core.adapters import Adapter


def assert_serves_http_as_declared(adapter: Adapter[Any]) -> None:
    """``http_router()`` of a started adapter gives routes when it declares ``serves_http``, else ``None``."""
    router = adapter.http_router()
    if type(adapter).capabilities.serves_http:
        assert isinstance(router, APIRouter), f"declares serves_http but http_router() returned {router!r}"
        assert router.routes, "declares serves_http but its router has no routes"
    else:
        assert router is None, "http_router() gave routes but serves_http is not declared"
