"""Recording archival to S3 stores far away: every client goes through a TCP proxy on 127.0.0.1 that delays
each direction by 30 ms (a 60 ms round trip, as to a cloud region; this machine has no netem), in one run on
the same WAV-like files, store by store (SeaweedFS's ``weed mini``, and radosgw where its Debian root builds):

- a naive sequential boto3 ``upload_file`` loop (the baseline: target Cartera >= 3x);
- ``rclone copy --transfers 16`` (Debian's rclone, chrooted in the radosgw root: target Cartera >= 0.9x);
- a raw concurrent ``put_object`` loop, no verification (the ceiling);
- Cartera's archival job with every verification (``bench_archival.cartera``: the dialer's reports, MD5 and
  SHA-256, PUT with Content-MD5 and the store or the plugin holding the SHA-256, the verifying HEAD, catalog).

The proxy runs in a process of its own, so its CPU is not counted as the clients'. It forwards without flow
control (an unbounded window): the latency, not a bandwidth cap, is what it adds.

Usage (as root, which the Debian root needs):
``PYTHONPATH=. .venv/bin/python bench/bench_wan_archive.py [--files N] [--size BYTES] [--delay-ms D]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

import pytest
from bench_archival import STORES, Results, cartera, ceiling, make_files, measure, naive, rclone

from tests.peers.debian import debian_root
from tests.peers.net import free_port
from tests.peers.s3 import PACKAGES, S3Endpoint

RAW_THREADS = 32
CHUNK = 1 << 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Forward one direction, each chunk ``delay_s`` after it arrived (in order, without serializing delays)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.create_task(deliver())
    with suppress(ConnectionError):
        while data := await reader.read(CHUNK):
            queue.put_nowait((loop.time() + delay_s, data))
    queue.put_nowait((loop.time() + delay_s, b""))
    with suppress(ConnectionError):
        await sender


async def _proxy(listen_port: int, upstream_port: int, delay_s: float) -> None:
    async def connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        for writer in (client_writer, upstream_writer):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(
                _pump(client_reader, upstream_writer, delay_s),
                _pump(upstream_reader, client_writer, delay_s),
                return_exceptions=True,
            )
        except asyncio.CancelledError:  # the proxy is stopping
            pass
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with await asyncio.start_server(connection, "127.0.0.1", listen_port):
        await stop.wait()  # then asyncio.run cancels the connections still open


@contextmanager
def latency_proxy(endpoint: S3Endpoint, delay_ms: float) -> Iterator[S3Endpoint]:
    """``endpoint`` behind the delaying proxy, run as a child process of this script."""
    port = free_port()
    upstream = int(endpoint.url.rsplit(":", 1)[1])
    process = subprocess.Popen([sys.executable, __file__, "--proxy", str(port), str(upstream), str(delay_ms)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("the latency proxy did not start") from None
                time.sleep(0.05)
        yield dataclasses.replace(endpoint, url=f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(10)


def round_trip_ms(endpoint: S3Endpoint) -> float:
    """The median of 5 HEAD-bucket round trips through the proxy (connection kept)."""
    client, bucket = endpoint.client(), endpoint.new_bucket()
    times = []
    for _ in range(6):
        began = time.perf_counter()
        client.head_bucket(Bucket=bucket)
        times.append(time.perf_counter() - began)
    return sorted(times[1:])[2] * 1000


def bench_store(
    store: str, root: Path, spool_in_root: str, files: list[Path], size: int, *, delay_ms: float
) -> Iterator[str]:
    start: Callable[[Path], AbstractContextManager[S3Endpoint]]
    start, provider = STORES[store]
    spool = root / spool_in_root.lstrip("/")
    with tempfile.TemporaryDirectory() as temp, start(Path(temp)) as local, latency_proxy(local, delay_ms) as far:
        print(f"--- {store} at {local.url} behind {far.url}: HEAD round trip {round_trip_ms(far):.0f} ms", flush=True)
        results: Results = {}
        log = Path(temp) / "rclone.log"
        measure("naive upload_file loop", lambda: naive(far, files), size, results)
        measure(
            "rclone copy --transfers 16",
            lambda: rclone(far, provider, root, spool_in_root, log, "--transfers", "16"),
            size,
            results,
        )
        measure(f"raw put_object x{RAW_THREADS} (ceiling)", lambda: ceiling(far, files, RAW_THREADS), size, results)
        measure("cartera archival (verified)", lambda: cartera(far, Path(temp), spool), size, results)
    ours = results["cartera archival (verified)"][0]
    base, rcl = results["naive upload_file loop"][0], results["rclone copy --transfers 16"][0]
    for name, (rate, megabytes, cpu_ms) in results.items():
        yield (
            f"| {store} | {name} | {rate:.1f} | {megabytes:.1f} | {rate / base:.2f} | {rate / rcl:.2f} | {cpu_ms:.1f} |"
        )
    print(f"{store}: cartera / naive {ours / base:.2f} (target >= 3), cartera / rclone {ours / rcl:.2f} (>= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--delay-ms", type=float, default=30, help="delay of each direction (half the RTT)")
    parser.add_argument("--stores", default="seaweedfs,radosgw", help=f"comma-separated, of: {', '.join(STORES)}")
    parser.add_argument("--proxy", nargs=3, metavar=("PORT", "UPSTREAM_PORT", "DELAY_MS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy:
        port, upstream, delay_ms = args.proxy
        asyncio.run(_proxy(int(port), int(upstream), float(delay_ms) / 1000))
        return
    root = debian_root("radosgw", PACKAGES)  # rclone's home, where the spool lives (radosgw's too)
    spool_in_root = f"/srv/cartera-wan-bench-{os.getpid()}"
    spool = root / spool_in_root.lstrip("/")
    report = [
        "| store | variant | recordings/s | MB/s | x naive | x rclone | client CPU ms/recording |",
        "|---|---|---|---|---|---|---|",
    ]
    try:
        files = make_files(spool, args.files, args.size)
        for store in args.stores.split(","):
            try:
                report.extend(bench_store(store, root, spool_in_root, files, args.size, delay_ms=args.delay_ms))
            except pytest.skip.Exception as exc:  # tests.peers.unavailable: this store cannot be had here
                report.append(f"| {store} | unavailable: {exc} | | | | | |")
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    print("\n".join(report))


if __name__ == "__main__":
    main()
