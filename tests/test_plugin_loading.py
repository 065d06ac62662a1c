"""A node imports only the built-in plugins its site names: the demo site has no business importing boto3."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cartera.core.errors import ConfigError
from cartera.core.hooks import BUILTIN_ADAPTERS, load_plugins, load_site_plugins
from cartera.node import Node
from tests.conftest import REPO
from tests.test_entry_point_plugins import TEMPLATE, install, site

#: The vendor libraries of plugins the demo site does not use.
OTHER_VENDORS = ("pjsua2", "boto3", "botocore", "paramiko", "smpplib", "psycopg")
DEMO_MODULES = {
    "cartera.plugins.dialers.simulator.plugin",
    "cartera.plugins.recording.localdir.plugin",
    "cartera.plugins.sms.outbox.plugin",
    "cartera.plugins.crm_sync.csv_dir.plugin",
}
#: Run in a fresh interpreter: open the demo site's node, check every vendor (starting each adapter), list the
#: top-level modules imported.
CHECK_AND_LIST_MODULES = """
import json, sys
from pathlib import Path
from cartera.node import Node
node = Node.open(Path(sys.argv[1]), "demo")
checked = [[line.what, line.result.ok] for line in node.check()]
node.close()
print(json.dumps({"checked": checked, "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the repository's sites.toml (site ``demo``) and the demo portfolio it reads."""
    shutil.copy(REPO / "sites.toml", tmp_path / "sites.toml")
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "demo_portfolio.csv", tmp_path / "examples")
    return tmp_path / "sites.toml"


def registered_modules(config: Path, site: str) -> set[str]:
    return {name for name, _ in load_site_plugins(config, site).plugin_manager.list_name_plugin()}


@pytest.mark.parametrize(("choice", "module"), sorted(BUILTIN_ADAPTERS.items()))
def test_the_table_names_what_each_builtin_module_registers(choice: tuple[str, str], module: str) -> None:
    catalog = load_plugins(entry_points=False, builtins=[module]).collect_adapters()
    assert [(kind, name) for kind, registry in catalog.by_kind().items() for name in registry.names()] == [choice]


def test_the_table_holds_every_builtin_plugin_module() -> None:
    modules = (path.relative_to(REPO).with_suffix("") for path in (REPO / "cartera" / "plugins").glob("*/*/plugin.py"))
    assert set(BUILTIN_ADAPTERS.values()) == {".".join(module.parts) for module in modules}


def test_a_site_loads_only_the_builtin_modules_it_names(demo: Path) -> None:
    assert registered_modules(demo, "demo") == DEMO_MODULES


def test_a_demo_node_imports_no_other_vendor_library(demo: Path) -> None:
    command = [sys.executable, "-c", CHECK_AND_LIST_MODULES, str(demo)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert all(ok for _, ok in seen["checked"]), seen["checked"]
    assert set(seen["modules"]) & set(OTHER_VENDORS) == set()


def test_a_site_naming_an_unknown_adapter_hears_of_every_builtin_one(demo: Path) -> None:
    demo.write_text(demo.read_text().replace('plugin = "simulator"', 'plugin = "asterisk_amy"'))
    with pytest.raises(ConfigError) as caught:
        Node.open(demo, "demo")
    assert "unknown dialer plugin 'asterisk_amy' (known: asterisk_ami, simulator, sip_trunk)" in str(caught.value)


@pytest.mark.usefixtures(site.__name__)
def test_a_site_naming_a_third_party_adapter_loads_it_and_only_the_builtins_it_names(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = tmp_path / "site-packages"  # the ``site`` fixture's, forgotten after
    monkeypatch.syspath_prepend(str(TEMPLATE))
    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    install(packages, project["name"], project["version"], project["entry-points"]["cartera"], "cartera_webhook_sms")
    demo.write_text(demo.read_text().replace('plugin = "outbox"', 'plugin = "webhook"'))
    expected = DEMO_MODULES - {"cartera.plugins.sms.outbox.plugin"} | {"webhook_sms"}
    assert registered_modules(demo, "demo") == expected
