"""Recording archival throughput against a real radosgw (dbstore), in one run, on the same 1 MB files:

- Cartera's archival job (spool scan, MD5+SHA-256, HEAD + PUT with Content-MD5 + verifying HEAD, catalog);
- a naive sequential boto3 ``upload_file`` loop (the baseline: target at least 3x);
- ``rclone copy`` (Debian's rclone, in the gateway's Debian root; target: at least as fast);
- a raw concurrent ``put_object`` loop without any verification (the ceiling: target at least 80%).

Usage (as root, which the Debian root needs): ``.venv/bin/python bench/bench_archival.py [--files N] [--size BYTES]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.node import Node
from tests.peers.debian import chrooted
from tests.peers.s3 import S3Endpoint, running_radosgw, s3_recording_table, write_archival_site

POOL = 10  # the s3 plugin's default max_pool_connections, also the ceiling's concurrency


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
    table = s3_recording_table(endpoint, endpoint.new_bucket())
    site = write_archival_site(site_dir, table, archival=f'spool_dir = "{spool}"\nlocal_retention_hours = 10000')
    site.write_text(site.read_text().replace('spool_dir = "spool"\n', ""))
    os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"] = endpoint.access_key, endpoint.secret_key
    node = Node.open(site, "t")
    try:
        assert node.archiver is not None
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


def ceiling(endpoint: S3Endpoint, files: list[Path]) -> int:
    client, bucket = endpoint.client(max_pool_connections=POOL), endpoint.new_bucket()

    def put(path: Path) -> None:
        with path.open("rb") as body:
            client.put_object(Bucket=bucket, Key=f"raw/{path.name}", Body=body)

    with ThreadPoolExecutor(POOL) as pool:
        list(pool.map(put, files))
    return len(files)


def rclone(endpoint: S3Endpoint, spool_in_root: str, log: Path) -> int:
    assert endpoint.root is not None
    remote = (
        f":s3,provider=Ceph,endpoint='{endpoint.url}',access_key_id={endpoint.access_key},"
        f"secret_access_key={endpoint.secret_key}:{endpoint.new_bucket()}/rclone"
    )
    with chrooted(endpoint.root, ["rclone", "copy", spool_in_root, remote], log=log) as process:
        if process.wait(3600) != 0:
            raise SystemExit(f"rclone failed, see {log}")
    return len(os.listdir(endpoint.root / spool_in_root.lstrip("/")))


def measure(name: str, work: Callable[[], int], size: int, results: dict[str, tuple[float, float]]) -> None:
    began = time.perf_counter()
    count = work()
    seconds = time.perf_counter() - began
    results[name] = (count / seconds, count * size / seconds / 1e6)
    print(f"{name:<34} {count} files in {seconds:6.1f}s  {results[name][0]:7.1f} files/s  {results[name][1]:6.1f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp, running_radosgw(Path(temp)) as endpoint:
        assert endpoint.root is not None
        spool_in_root = f"/srv/cartera-bench-{os.getpid()}"
        spool = endpoint.root / spool_in_root.lstrip("/")
        try:
            files = make_files(spool, args.files, args.size)
            results: dict[str, tuple[float, float]] = {}
            measure("naive upload_file loop (baseline)", lambda: naive(endpoint, files), args.size, results)
            measure(
                "rclone copy", lambda: rclone(endpoint, spool_in_root, Path(temp) / "rclone.log"), args.size, results
            )
            measure(f"raw put_object x{POOL} (ceiling)", lambda: ceiling(endpoint, files), args.size, results)
            measure("cartera archival (verified)", lambda: cartera(endpoint, Path(temp), spool), args.size, results)
        finally:
            shutil.rmtree(spool, ignore_errors=True)
    ours = results["cartera archival (verified)"][0]
    for name, (rate, _) in results.items():
        print(f"cartera / {name}: {ours / rate:.2f}")


if __name__ == "__main__":
    main()
