"""The campaign's modes (``[campaign] mode``): how many calls each tick places, within the dialer's capacity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks
from cartera.core.store.schema import ContactAttempt
from cartera.node import Node
from tests.conftest import write_portfolio, write_sites

ROWS = [f"BCO-{n};Deudor {n};+5730012345{n:02d};;1.000.000,00;COP" for n in range(1, 7)]


def _with_mode(tmp_path: Path, mode: str) -> Path:
    path = write_sites(tmp_path)
    path.write_text(path.read_text().replace("[sites.t.campaign]\n", f'[sites.t.campaign]\nmode = "{mode}"\n'))
    write_portfolio(tmp_path / "inbox", ROWS)
    return path


def test_a_mode_typo_is_a_config_error_naming_file_line_and_key(tmp_path: Path, hooks: Hooks) -> None:
    path = _with_mode(tmp_path, "predictve")
    line = next(i for i, row in enumerate(path.read_text().splitlines(), 1) if "predictve" in row)
    with pytest.raises(ConfigError) as raised:
        load_site(path, "t", hooks.collect_adapters())
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}: site 't', key 'campaign.mode'")
    assert "'ratio' or 'preview'" in message


def test_preview_places_no_call_by_itself(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(_with_mode(tmp_path, "preview"))
    node.creditor_sync().run_once()
    campaign = node._campaign()
    assert campaign is not None
    assert campaign.dialer.capacity() > 0
    assert [campaign.tick() for _ in range(3)] == [0, 0, 0]
    with node.db.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ContactAttempt)) == 0
