"""Recording archival throughput against real S3 stores, in one run, on the same 1 MB files, store by store:
radosgw (Ceph's gateway on its SQLite dbstore backend) and SeaweedFS (``weed mini``).

- Cartera's archival job (the dialer's reports of the spool's files, MD5+SHA-256, PUT with Content-MD5 +
  verifying HEAD, catalog; a HEAD before the PUT where the store ignores ``If-None-Match: *``: the plugin's
  ``no_overwrite = "auto"`` probe);
- a naive sequential boto3 ``upload_file`` loop (the baseline: target at least 3x);
- ``rclone copy`` (Debian's rclone, in the radosgw Debian root; target: at least as fast);
- a raw concurrent ``put_object`` loop without any verification (the ceiling: target at least 80%).

Usage (as root, which the Debian root needs):
``PYTHONPATH=. .venv/bin/python bench/bench_archival.py [--files N] [--size BYTES] [--stores radosgw,seaweedfs]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

from cartera.node import Node
from tests.peers.debian import chrooted, debian_root
from tests.peers.s3 import (
    PACKAGES,
    S3Endpoint,
    running_radosgw,
    running_seaweedfs,
    s3_recording_table,
    write_archival_site,
)
from tests.recording_spool import report_spool

POOL = 10  # the ceiling's concurrency here (the s3 plugin's max_pool_connections default when this was measured)
STORES: dict[str, tuple[Callable[[Path], AbstractContextManager[S3Endpoint]], str]] = {
    "radosgw": (running_radosgw, "Ceph"),  # the server, and rclone's provider name for it
    "seaweedfs": (running_seaweedfs, "SeaweedFS"),
}
Results = dict[str, tuple[float, float, float]]  # files/s, MB/s, client CPU ms per file


def make_files(directory: Path, count: int, size: int) -> list[Path]:
    directory.mkdir(parents=True)
    files = []
    stamp = time.time() - 3600
    for index in range(count):
        path = directory / f"{index:05d}.wav"
        path.write_bytes(os.urandom(size))
        os.utime(path, (stamp, stamp))
        files.append(path)
    return files


def cartera(endpoint: S3Endpoint, work: Path, spool: Path) -> int:
    site_dir = work / "site"
    site_dir.mkdir()
    table = s3_recording_table(endpoint, endpoint.new_bucket(), no_overwrite="auto")
    site = write_archival_site(site_dir, table, archival="local_retention_hours = 10000")
    os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"] = endpoint.access_key, endpoint.secret_key
    node = Node.open(site, "t")
    try:
        assert node.archiver is not None
        report_spool(node, spool)  # the files reach the catalog by the one door, the dialer's report
        run = node.archiver.run_once()
    finally:
        node.close()
    if not run.ok:
        raise SystemExit(f"cartera's run failed: {run}")
    return run.archived


def naive(endpoint: S3Endpoint, files: list[Path]) -> int:
    client, bucket = endpoint.client(), endpoint.new_bucket()
    for path in files:
        client.upload_file(str(path), bucket, f"naive/{path.name}")
    return len(files)


def ceiling(endpoint: S3Endpoint, files: list[Path], threads: int = POOL) -> int:
    """Bare ``put_object`` calls on ``threads`` threads: no checksum, no HEAD, no catalog."""
    client, bucket = endpoint.client(max_pool_connections=threads), endpoint.new_bucket()

    def put(path: Path) -> None:
        with path.open("rb") as body:
            client.put_object(Bucket=bucket, Key=f"raw/{path.name}", Body=body)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, files))
    return len(files)


def rclone(endpoint: S3Endpoint, provider: str, root: Path, spool_in_root: str, log: Path, *flags: str) -> int:
    """``rclone copy [flags]`` run chrooted in ``root``, where the spool is ``spool_in_root``."""
    remote = (
        f":s3,provider={provider},endpoint='{endpoint.url}',access_key_id={endpoint.access_key},"
        f"secret_access_key={endpoint.secret_key}:{endpoint.new_bucket()}/rclone"
    )
    with chrooted(root, ["rclone", "copy", *flags, spool_in_root, remote], log=log) as process:
        if process.wait(3600) != 0:
            raise SystemExit(f"rclone failed, see {log}")
    return len(os.listdir(root / spool_in_root.lstrip("/")))


def client_cpu_s() -> float:
    """CPU seconds of this process (the clients, and Cartera's node) and of its finished children (rclone)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(name: str, work: Callable[[], int], size: int, results: Results) -> None:
    began, cpu = time.perf_counter(), client_cpu_s()
    count = work()
    seconds, cpu = time.perf_counter() - began, client_cpu_s() - cpu
    results[name] = (count / seconds, count * size / seconds / 1e6, cpu / count * 1000)
    rate, megabytes, cpu_ms = results[name]
    print(f"{name:<34} {count} files in {seconds:6.1f}s {rate:7.1f} files/s {megabytes:6.1f} MB/s {cpu_ms:5.1f} ms CPU")


def bench_store(store: str, root: Path, spool_in_root: str, files: list[Path], size: int) -> Iterator[str]:
    """The four variants against a fresh ``store``, each to its own bucket; yields the report's lines."""
    start, provider = STORES[store]
    spool = root / spool_in_root.lstrip("/")
    with tempfile.TemporaryDirectory() as temp, start(Path(temp)) as endpoint:
        results: Results = {}
        print(f"--- {store} at {endpoint.url}")
        measure("naive upload_file loop (baseline)", lambda: naive(endpoint, files), size, results)
        log = Path(temp) / "rclone.log"
        measure("rclone copy", lambda: rclone(endpoint, provider, root, spool_in_root, log), size, results)
        measure(f"raw put_object x{POOL} (ceiling)", lambda: ceiling(endpoint, files), size, results)
        measure("cartera archival (verified)", lambda: cartera(endpoint, Path(temp), spool), size, results)
    ours = results["cartera archival (verified)"][0]
    for name, (rate, megabytes, cpu_ms) in results.items():
        yield (
            f"{store:<10} {name:<34} {rate:7.1f} files/s {megabytes:6.1f} MB/s {cpu_ms:5.1f} ms client CPU/file  "
            f"cartera / it: {ours / rate:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--stores", default=",".join(STORES), help=f"comma-separated, of: {', '.join(STORES)}")
    args = parser.parse_args()
    root = debian_root("radosgw", PACKAGES)  # rclone's home, where the spool lives (radosgw's too)
    spool_in_root = f"/srv/cartera-bench-{os.getpid()}"
    spool = root / spool_in_root.lstrip("/")
    report: list[str] = []
    try:
        files = make_files(spool, args.files, args.size)
        for store in args.stores.split(","):
            report.extend(bench_store(store, root, spool_in_root, files, args.size))
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    print("\n".join(report))


if __name__ == "__main__":
    main()
