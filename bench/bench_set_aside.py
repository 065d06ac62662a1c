"""The memory of creditor files left in the inbox (``SetAsideFiles``) with thousands of files: before and after.

Round 21 A-F4: a creditor leaving N files in its ``csv`` inbox (``keep_files``, or a rejected folder it made a
file) made every sync scan a ledger once per file (N² per sync); ee93259 replaced the ledgers by one JSON map
rewritten whole (with fsync) on each change, N²/2 bytes written while the N files are remembered. The map is now
a SQLite table, one row per file. Two measurements, each in its own process, the old code taken from a commit's
tree (``git archive``, default ee93259) and the new from this checkout:

- the store alone: N ``remember`` (each committed and synced, as a sync does), then a lookup of every file (a
  fetch pass), then ``forget_unlisted`` (a sync's listing): wall and CPU seconds, bytes handed to ``write()``
  (``/proc/self/io`` wchar);
- end to end, the red team's scenario: the tests' site with the ``csv`` plugin, ``inbox/rejected`` a regular
  file, N junk files (``x;y``), three runs of the creditor sync (the first rejects all N, leaving them in the
  inbox, remembered; the next two have nothing to do).

Usage: ``.venv/bin/python bench/bench_set_aside.py [--sizes 3000,12000] [--old-sizes 3000] [--old ee93259]
[--skip-e2e]``. The old code at 12,000 files writes ~15 GB (the finding): left out by default.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PREAMBLE = r"""
import json, logging, os, random, sys, time
from pathlib import Path

def wchar():
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])

n, folder = int(sys.argv[1]), Path(sys.argv[2])
"""

STORE = r"""
from cartera.portfolio.files.set_aside import SetAsideFiles
store = SetAsideFiles(folder / "set-aside", logging.getLogger("bench"), limit=1_000_000)
sources = [f"/srv/creditor/inbox/junk-{i:06d}.csv" for i in range(n)]
result = {}
w, t, c = wchar(), time.perf_counter(), time.process_time()
for i, source in enumerate(sources):
    store.remember(source, f"2049:{1000 + i}:12:1764950000000000000:1764950000000000000", "%064x" % i, "rejected")
result["remember"] = [time.perf_counter() - t, time.process_time() - c, wchar() - w]
w, t, c = wchar(), time.perf_counter(), time.process_time()
held = sum(
    store.get(source, f"2049:{1000 + i}:12:1764950000000000000:1764950000000000000") is not None
    for i, source in enumerate(sources)
)
assert held == n, held
result["lookups"] = [time.perf_counter() - t, time.process_time() - c, wchar() - w]
w, t, c = wchar(), time.perf_counter(), time.process_time()
store.forget_unlisted(set(sources[1:]), prefix="/srv/creditor/inbox/")
result["forget_unlisted"] = [time.perf_counter() - t, time.process_time() - c, wchar() - w]
print(json.dumps(result))
"""

E2E = r"""
from tests.conftest import SITE_TOML
from cartera.node import Node
from cartera.core.hooks import load_plugins
config = folder / "sites.toml"
config.write_text(
    SITE_TOML.format(start="2026-11-23T09:00:00-05:00", database="", web_port=random.randint(20000, 60000))
)
inbox = folder / "inbox"
inbox.mkdir()
(inbox / "rejected").write_text("not a folder\n")  # the creditor's own inbox: its rejected folder made a file
for i in range(n):
    (inbox / f"junk-{i:06d}.csv").write_text(f"x;y\n{i};z\n")
node = Node.open(config, "t", load_plugins(entry_points=False))
runs = []
for _ in range(3):
    w, t, c = wchar(), time.perf_counter(), time.process_time()
    run = node.creditor_sync().run_once()
    runs.append([time.perf_counter() - t, time.process_time() - c, wchar() - w, len(run.rejected), len(run.failed)])
node.close()
print(json.dumps(runs))
"""


def run(code: str, tree: Path, n: int) -> object:
    with tempfile.TemporaryDirectory(prefix="bench-set-aside-") as folder:
        done = subprocess.run(
            [sys.executable, "-c", PREAMBLE + code, str(n), folder],
            cwd=tree,
            env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"{tree} n={n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="3000,12000")
    parser.add_argument("--old-sizes", default="3000")
    parser.add_argument("--old", default="ee93259")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    old_sizes = {int(size) for size in args.old_sizes.split(",") if size}
    print(f"# {platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-set-aside-old-") as old_tree:
        archive = subprocess.run(["git", "archive", args.old], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old_tree], input=archive, check=True)
        trees = {"old": Path(old_tree), "new": ROOT}
        runs = [(label, n, tree) for n in sizes for label, tree in trees.items() if label == "new" or n in old_sizes]
        print("## store: remember N, look up N, forget_unlisted (wall s, cpu s, MB written)")
        for label, n, tree in runs:
            result = run(STORE, tree, n)
            assert isinstance(result, dict)
            cells = ", ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}/{v[2] / 1e6:.1f}" for k, v in result.items())
            print(f"{label} N={n}: {cells}", flush=True)
        if args.skip_e2e:
            return
        print("## end to end: 3 creditor syncs (wall s, cpu s, MB written, rejected, failed)")
        for label, n, tree in runs:
            syncs = run(E2E, tree, n)
            assert isinstance(syncs, list)
            cells = " | ".join(f"{w:.1f}/{c:.1f}/{b / 1e6:.1f} rej={r} fail={f}" for w, c, b, r, f in syncs)
            print(f"{label} N={n}: {cells}", flush=True)


if __name__ == "__main__":
    main()
