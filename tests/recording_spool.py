"""How recordings reach the catalog in the archival tests: the Asterisk dialer's spool watcher reports a
spool folder's finished files through the node's plugin context, the one door (no AMI needed)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from cartera.node import Node
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.spool import SpoolWatcher
from cartera.runtime.context import NodeContext


def spool_watcher(node: Node, spool: Path, quiet_period_s: float = 0.5) -> SpoolWatcher:
    """A watcher of ``spool`` reporting its finished WAV files to ``node`` as the site's dialer would."""
    config = AsteriskAmiConfig(
        username="cartera",
        secret=SecretStr("not-used-without-ami"),
        queue="cobranza",
        spool_dir=spool,
        spool_patterns=("*.wav", "*.WAV"),
        quiet_period_s=quiet_period_s,
    )
    return SpoolWatcher(config, NodeContext(node, "dialer"), prefix="cartera-t")


def report_spool(node: Node, spool: Path) -> int:
    """Report ``spool``'s finished files to ``node``; how many."""
    return spool_watcher(node, spool).scan()
