"""Cartera's archival before and after a change, alternating, against the same store in one run.

Each round archives the same 1 MB files once with each checkout, in its own process (``bench_archival.cartera``
of that checkout, a new bucket each time), so both meet the same machine load. Make the "before" checkout with
``git worktree add /tmp/before HEAD`` (or ``git archive REV | tar -x -C DIR``).

Usage (as root, which radosgw's Debian root needs):
``PYTHONPATH=. .venv/bin/python bench/bench_archival_ab.py --before DIR [--after .] [--files N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_archival import STORES, make_files

#: Runs in the checkout under test (its own ``bench_archival``): one archival run; files, wall and CPU seconds.
CHILD = """
import json, sys, time
from pathlib import Path
from bench.bench_archival import cartera
from tests.peers.s3 import S3Endpoint
cpu, wall = time.process_time(), time.monotonic()
files = cartera(S3Endpoint(**json.loads(sys.argv[1])), Path(sys.argv[2]), Path(sys.argv[3]))
print(json.dumps({"files": files, "wall": time.monotonic() - wall, "cpu": time.process_time() - cpu}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code before the change")
    parser.add_argument("--after", type=Path, default=Path("."), help="checkout of the code after it")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", default=",".join(STORES))
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory() as temp:
            spool, data = Path(temp) / "spool", Path(temp) / "store"
            make_files(spool, args.files, 1_000_000)
            data.mkdir()
            with STORES[store][0](data) as endpoint:
                described = json.dumps({k: v for k, v in dataclasses.asdict(endpoint).items() if k != "root"})
                for round_ in range(args.rounds):
                    for label, checkout in checkouts.items():
                        work = Path(temp) / f"{label}-{round_}"
                        work.mkdir()
                        ran = subprocess.run(
                            [sys.executable, "-c", CHILD, described, str(work), str(spool)],
                            cwd=checkout,
                            env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"},
                            capture_output=True,
                            text=True,
                            check=True,
                        )
                        got = json.loads(ran.stdout.splitlines()[-1])
                        print(
                            f"{store:<10} round {round_} {label:<6} {got['files'] / got['wall']:7.1f} files/s "
                            f"{1000 * got['cpu'] / got['files']:6.2f} ms CPU/file (process start included)",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
