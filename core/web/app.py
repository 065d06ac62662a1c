"""The node's ASGI app: core's own routes plus each started adapter's :meth:`~core.adapters.Adapter.http_router`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from core.node import Node

PLUGIN_PREFIX = "/plugins"


def build_app(node: Node) -> FastAPI:
    """The app of one site's node. Plugin routes live under ``/plugins/{kind}``."""
    app = FastAPI(title=f"Cartera node {node.site.name}", version="1")
    for kind, router in node.http_routers():
        app.include_router(router, prefix=f"{PLUGIN_PREFIX}/{kind}")
    return app
