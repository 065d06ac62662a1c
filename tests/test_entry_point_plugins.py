"""Third-party plugins through the ``cartera`` entry-point group, with the plugin template as the vendor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartera.core.errors import PluginError
from cartera.core.hooks import PluginInfo, load_plugins
from cartera.core.testing.sms import SmsConformance

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "examples" / "plugin_template"


def install(site: Path, name: str, version: str, entry_points: dict[str, str], top_level: str) -> None:
    """Write the ``.dist-info`` an installer leaves in site-packages for distribution ``name``."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep} = {value}\n" for ep, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[cartera]\n{lines}")
    (info / "top_level.txt").write_text(f"{top_level}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty site-packages on ``sys.path``; modules imported from it or the template are forgotten after."""
    packages = tmp_path / "site-packages"
    packages.mkdir()
    monkeypatch.syspath_prepend(str(packages))
    yield packages
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith((str(tmp_path), str(TEMPLATE))):
            del sys.modules[name]


def test_the_installed_template_is_registered_and_described(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    install(site, project["name"], project["version"], project["entry-points"]["cartera"], "cartera_webhook_sms")
    monkeypatch.syspath_prepend(str(TEMPLATE))
    hooks = load_plugins()
    catalog = hooks.collect_adapters()
    adapter = catalog.sms_gateways.get("webhook")
    assert f"{adapter.__module__}.{adapter.__qualname__}" == "cartera_webhook_sms.plugin.WebhookSmsGateway"
    assert "outbox" in catalog.sms_gateways.names()
    assert hooks.plugin_manager.get_plugin("webhook_sms") is sys.modules["cartera_webhook_sms.plugin"]
    info = PluginInfo(kind="sms", name="webhook", version=project["version"], origin="cartera-webhook-sms")
    assert info in hooks.describe(catalog)


def test_an_entry_point_that_fails_to_import_names_itself_and_its_distribution(site: Path) -> None:
    (site / "cartera_broken_sms.py").write_text("import cartera_no_such_vendor_sdk\n")
    install(site, "cartera-broken-sms", "1.2.0", {"broken_sms": "cartera_broken_sms"}, "cartera_broken_sms")
    with pytest.raises(PluginError) as caught:
        load_plugins()
    message = str(caught.value)
    assert "'broken_sms'" in message
    assert "from distribution cartera-broken-sms" in message
    assert "cartera_no_such_vendor_sdk" in message


@pytest.mark.parametrize(
    ("hook", "complaint", "culprit"),
    [
        (
            "def cartera_register_dialer(register):",
            "unknown hook 'cartera_register_dialer'",
            "<module 'cartera_typo_dialer'",
        ),
        ("def cartera_register_dialers(registry):", "{'registry'} are declared in the hookimpl", "'typo_dialer'"),
    ],
)
def test_a_misspelled_hook_fails_at_start_up(site: Path, hook: str, complaint: str, culprit: str) -> None:
    source = f"from cartera.core.hookspecs import hookimpl\n\n@hookimpl\n{hook}\n    pass\n"
    (site / "cartera_typo_dialer.py").write_text(source)
    install(site, "cartera-typo-dialer", "0.3.0", {"typo_dialer": "cartera_typo_dialer"}, "cartera_typo_dialer")
    with pytest.raises(PluginError) as caught:
        load_plugins()
    assert complaint in str(caught.value)
    assert culprit in str(caught.value)


def test_the_template_passes_its_own_tests() -> None:
    path = os.pathsep.join(p for p in (str(TEMPLATE), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "examples/plugin_template/tests", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "skipped" not in output, output
    assert "no tests ran" not in output, output
    passed = re.search(r"\b(\d+) passed\b", output)
    assert passed, output
    suite = [name for name in dir(SmsConformance) if name.startswith("test_")]
    assert int(passed.group(1)) > len(suite), output
