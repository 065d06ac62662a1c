"""An archival ``key_template`` whose keys a store refuses (an empty, ``.`` or ``..`` component, a leading ``/``,
a component starting with ``.``, also through a format spec) is refused when the configuration is loaded; a
recording whose key such a template made before is given a new key from the current template rather than failing
at every run for good (red team round 15, M5)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cartera.core.clock import SystemClock
from cartera.core.config import ArchivalConfig, load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks, load_plugins
from cartera.core.models import Recording
from cartera.core.store.database import Database
from cartera.core.store.schema import RecordingRow
from cartera.plugin import recording_key_problem
from cartera.plugin.testing import CapturingContext
from cartera.plugins.recording.localdir import client
from cartera.plugins.recording.localdir.config import LocalDirConfig
from cartera.plugins.recording.localdir.plugin import LocalDirStore
from cartera.recordings.archival import Archiver

pytestmark = pytest.mark.abuse
BEGAN = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{site}//{call_id}.{ext}", "'empty' component"),
        ("../{site}/{call_id}.{ext}", "'..' component"),
        ("{site}/./{call_id}.{ext}", "'.' component"),
        ("/{site}/{call_id}.{ext}", "it is absolute"),
        (".{site}/{call_id}.{ext}", "starts with '.'"),
        ("{site}/.{call_id}.{ext}", "starts with '.'"),
        ("{call_id:/<4}.{ext}", "'empty' component"),
        ("{site}/{yyyy:.>6}/{call_id}.{ext}", "component '..2026' starts with '.'"),
        ("{site:.0}/{call_id}.{ext}", "such as '/7.wav': it is absolute"),
        ("{site}\\{call_id}.{ext}", "backslash"),
        ("{site}/{call_id:05d}.{ext}", "cannot make a key of call 'rec-7'"),
    ],
)
def test_a_template_giving_keys_a_store_refuses_is_refused_with_its_line(
    hooks: Hooks, sites_toml: Path, *, template: str, problem: str
) -> None:
    literal = f"key_template = '{template}'"  # a TOML literal string: the backslash as written
    text = sites_toml.read_text().replace("[sites.t.archival]\n", f"[sites.t.archival]\n{literal}\n")
    sites_toml.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("key_template"))
    with pytest.raises(ConfigError) as raised:
        load_site(sites_toml, "t", hooks.collect_adapters())
    message = str(raised.value)
    assert message.startswith(f"{sites_toml}:{line}: site 't', key 'archival.key_template': "), message
    assert problem in message, message


@pytest.mark.parametrize(
    "template",
    ["{site}/{yyyy}/{mm}/{dd}/{call_id}.{ext}", "calls/{yyyy}{mm}{dd}/{call_id}.{ext}", "{call_id:>08}.{ext}"],
)
def test_ordinary_templates_still_load(hooks: Hooks, sites_toml: Path, template: str) -> None:
    sites_toml.write_text(
        sites_toml.read_text().replace("[sites.t.archival]\n", f'[sites.t.archival]\nkey_template = "{template}"\n')
    )
    assert load_site(sites_toml, "t", hooks.collect_adapters()).section.archival.key_template == template


def test_the_localdir_store_uses_cores_rule() -> None:
    assert client.key_problem is recording_key_problem
    assert recording_key_problem("t//3.wav") == "it has a 'empty' component"
    assert recording_key_problem("t/2026/11/23/3.wav") is None


def _archiver(tmp_path: Path) -> Archiver:
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    db.migrate()
    store = LocalDirStore(LocalDirConfig(path=tmp_path / "archive", fsync=False), CapturingContext(tmp_path / "d"))
    store.start()
    return Archiver(
        site="t",
        zone=ZoneInfo("America/Bogota"),
        db=db,
        store=lambda: store,
        hooks=load_plugins(entry_points=False),
        clock=SystemClock(),
        config=ArchivalConfig(workers=1),
    )


def test_a_recording_keyed_by_an_old_bad_template_is_rekeyed_and_archived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archiver = _archiver(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "call-3.wav").write_bytes(b"RIFF" + bytes(100))
    recording_id = archiver.catalog(Recording(spool / "call-3.wav", None, BEGAN, 1.0))
    with archiver.db.session() as session:  # as a template of before the check ("{site}//{call_id}.{ext}") left it
        row = session.get_one(RecordingRow, recording_id)
        row.store_key, row.state, row.failures = "t//3.wav", "failed", 10
        row.error = "store error: ValueError(\"invalid recording key 't//3.wav': it has a 'empty' component\")"
    with caplog.at_level(logging.WARNING, logger="cartera.archival"):
        run = archiver.run_once()
    assert (run.archived, run.failed) == (1, 0)
    with archiver.db.session() as session:
        row = session.scalars(select(RecordingRow).where(RecordingRow.id == recording_id)).one()
        assert (row.state, row.store_key) == ("verified", f"t/2026/11/23/rec-{recording_id}.wav")
    assert (tmp_path / "archive" / "t/2026/11/23" / f"rec-{recording_id}.wav").is_file()
    remade = [record.__dict__["fields"] for record in caplog.records if record.getMessage() == "recording.key_remade"]
    assert remade == [
        {
            "recording": recording_id,
            "old_key": "t//3.wav",
            "problem": "it has a 'empty' component",
            "key": f"t/2026/11/23/rec-{recording_id}.wav",
        }
    ]
