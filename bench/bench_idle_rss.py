"""Idle memory of the demo node: its site's plugins only (now) against every built-in plugin imported (before).

Each run starts ``run_site.py --site demo run`` as ``make demo`` does, on a fresh temporary copy of the demo's
data (``sites.toml`` and the demo portfolio; the node creates ``var/`` beside them) with the web server on a free
port. It waits until the node is idle: ``node.started`` logged, then ``--settle`` seconds (the demo's simulated
working day is over after about 25 s, the portfolio imported and exported, the recordings archived). Then it reads
VmRSS and VmHWM from ``/proc/PID/status`` and stops the node with SIGTERM. The baseline runs the same node with
every built-in plugin module imported before ``run_site.py`` starts, as every node did before plugins were loaded
per site. A third variant, ``after-untuned``, is ``after`` without ``run``'s malloc tuning (cartera/cli/malloc.py:
a fixed mmap threshold and two arenas), as glibc's defaults leave it: glibc keeps large freed buffers in the
threads' heaps once its dynamic mmap threshold has risen. The variants alternate, each round in reverse order.

Usage: ``.venv/bin/python bench/bench_idle_rss.py [--runs 3] [--settle 30]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Variant -> how the measured interpreter starts (see LAUNCH).
VARIANTS: dict[str, str] = {"before": "all", "after": "site", "after-untuned": "untuned"}
#: Run in the measured interpreter: with "all", every built-in plugin module is imported first; with "untuned",
#: ``run`` leaves malloc as glibc's defaults have it; then run_site.py.
LAUNCH = """
import importlib, runpy, sys
if sys.argv[1] == "all":
    from cartera.core.hooks import BUILTIN_ADAPTERS
    for module in BUILTIN_ADAPTERS.values():
        importlib.import_module(module)
if sys.argv[1] == "untuned":
    import cartera.cli.main
    cartera.cli.main.tune_malloc = dict
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def demo_copy(directory: Path) -> Path:
    """The demo's sites.toml and portfolio under ``directory``, its web server on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = (ROOT / "sites.toml").read_text(encoding="utf-8")
    header = "[sites.demo.web]\n"
    text = text.replace(header, f"{header}port = {port}\n") if header in text else f"{text}\n{header}port = {port}\n"
    (directory / "sites.toml").write_text(text, encoding="utf-8")
    (directory / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "demo_portfolio.csv", directory / "examples")
    return directory / "sites.toml"


def memory_kb(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


def idle_node(variant: str, settle: float) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of one demo node ``settle`` seconds after it started."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as scratch:
        config = demo_copy(Path(scratch))
        log_path = Path(scratch) / "node.log"
        command = [sys.executable, "-c", LAUNCH, VARIANTS[variant], str(ROOT / "run_site.py")]
        command += ["--config", str(config), "--site", "demo", "run"]
        with (
            log_path.open("w") as log,
            subprocess.Popen(command, cwd=scratch, stdout=log, stderr=log) as node,
        ):
            try:
                deadline = time.monotonic() + 120
                while "node.started" not in log_path.read_text(encoding="utf-8"):
                    if node.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the demo node did not start:\n{log_path.read_text(encoding='utf-8')}")
                    time.sleep(0.2)
                time.sleep(settle)
                return memory_kb(node.pid)
            finally:
                node.send_signal(signal.SIGTERM)
                try:
                    node.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    node.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (default 3)")
    parser.add_argument("--settle", type=float, default=30, help="seconds after node.started (default 30)")
    args = parser.parse_args()
    results: dict[str, list[dict[str, int]]] = {variant: [] for variant in VARIANTS}
    print("| round | variant | VmRSS MB | VmHWM MB |\n| --- | --- | --- | --- |")
    for round_ in range(1, args.runs + 1):
        for variant in list(VARIANTS)[:: 1 if round_ % 2 else -1]:
            memory = idle_node(variant, args.settle)
            results[variant].append(memory)
            print(f"| {round_} | {variant} | {memory['VmRSS'] / 1024:.1f} | {memory['VmHWM'] / 1024:.1f} |", flush=True)
    print(f"\nmedians ({args.runs} runs each, CPython {platform.python_version()}, load {os.getloadavg()[0]:.1f}):")
    for variant, runs in results.items():
        rss, hwm = (statistics.median(run[key] for run in runs) / 1024 for key in ("VmRSS", "VmHWM"))
        print(f"- {variant}: VmRSS {rss:.1f} MB, VmHWM {hwm:.1f} MB")


if __name__ == "__main__":
    main()
