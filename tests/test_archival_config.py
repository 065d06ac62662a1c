"""The archival settings: the spool folder and what makes a file finished moved to the Asterisk dialer."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartera.core.config import MOVED_TO_DIALER, load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import load_plugins
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig

SITE = """[sites.t]
timezone = "America/Bogota"
country = "CO"

[sites.t.compliance]
authorised_channels = ["call"]

[sites.t.archival]
every_seconds = 5
{moved}

[sites.t.dialer]
plugin = "asterisk_ami"
username = "cartera"
secret = "0123456789abcdef"
queue = "cobranza"
{dialer}
"""


MOVED = [("spool_dir", '"/var/spool/asterisk/monitor"'), ("spool_patterns", '["*.wav"]'), ("quiet_period_s", "5")]


@pytest.mark.parametrize(("key", "value"), MOVED)
def test_an_archival_spool_setting_names_where_it_moved(tmp_path: Path, key: str, value: str) -> None:
    config = tmp_path / "sites.toml"
    config.write_text(SITE.format(moved=f"{key} = {value}", dialer=""), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_site(config, "t", load_plugins(entry_points=False).collect_adapters())
    message = str(error.value)
    assert message.startswith(f"{config}:10: site 't', key 'archival.{key}': moved to the site's dialer section")
    assert 'plugin = "asterisk_ami"' in message
    assert key in MOVED_TO_DIALER


def test_the_asterisk_dialer_takes_the_spool_settings(tmp_path: Path) -> None:
    config = tmp_path / "sites.toml"
    dialer = 'spool_dir = "monitor"\nspool_patterns = ["*.wav"]\nquiet_period_s = 2\nspool_scan_s = 10'
    config.write_text(SITE.format(moved="", dialer=dialer), encoding="utf-8")
    site = load_site(config, "t", load_plugins(entry_points=False).collect_adapters())
    settings = site.plugins["dialer"].settings
    assert isinstance(settings, AsteriskAmiConfig)
    assert (settings.spool_dir, settings.quiet_period_s) == (tmp_path / "monitor", 2)
