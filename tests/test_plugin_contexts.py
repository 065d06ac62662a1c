"""Every :class:`cartera.core.adapters.PluginContext` core builds (a node's, another site's store's, the tests')
holds the site, clock, folder and logger through the one :class:`cartera.core.adapters.ContextBase`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cartera.core.adapters import ContextBase
from cartera.core.clock import SystemClock
from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.recordings.peer_stores import PeerContext
from cartera.runtime.context import NodeContext
from tests.conftest import write_sites

SHARED = {"site", "clock", "data_dir", "log"}


@pytest.mark.parametrize("context", [NodeContext, PeerContext, CapturingContext])
def test_a_context_takes_the_shared_members_from_the_one_base(context: type[ContextBase]) -> None:
    assert issubclass(context, ContextBase)
    assert not SHARED & set(vars(context)), f"{context.__name__} defines {sorted(SHARED & set(vars(context)))} again"


def test_each_context_gives_its_site_clock_created_folder_and_logger(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    node = open_node(write_sites(tmp_path))
    clock = SystemClock()
    contexts = {
        "node": (
            NodeContext(node, "sms"),
            node.site.name,
            node.clock,
            node.site.data_dir / "sms",
            "cartera.plugin.sms",
        ),
        "peer": (
            PeerContext("b", clock, tmp_path / "peer"),
            "b",
            clock,
            tmp_path / "peer",
            "cartera.plugin.recording.peer",
        ),
        "test": (CapturingContext(tmp_path / "t", site="c", clock=clock), "c", clock, tmp_path / "t", "cartera.test.c"),
    }
    for name, (context, site, site_clock, folder, logger) in contexts.items():
        assert (context.site, context.clock, context.data_dir, context.log.name) == (
            site,
            site_clock,
            folder,
            logger,
        ), name
        assert folder.is_dir(), name
