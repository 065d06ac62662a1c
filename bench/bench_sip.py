"""SIP trunk dialer: call setup rate and setup latency through Kamailio to SIPp, against ``sipp -sn uac``.

Usage: ``.venv/bin/python bench/bench_sip.py [--calls N] [--concurrency C]`` (needs root: the peers run
chrooted, see tests/peers/sip.py).

One Kamailio + SIPp pair (the debtors' phones answer at once). Each driver places N calls to the number that
answers, at most C at a time, as fast as it can:

- ``sipp -sn uac`` (the ceiling) on Kamailio's IP-authenticated port: INVITE, 200, ACK, BYE; its response time
  (INVITE sent → 200 OK received) from ``-trace_rtt``;
- the ``sip_trunk`` dialer on the same port: INVITE, 200, ACK, REFER to the queue, NOTIFY, BYE; setup latency as
  the node sees it (``place_call`` → the answer reported by the SIP worker, so the worker hop is included);
- the dialer on the digest-authenticated port (a 407 challenge and a second INVITE per call).

Rates are calls completed per second of wall time, first call placed → last call ended.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers: the peers' provisioning
from cartera.core.models import CallOutcome, CallRequest
from cartera.core.testing.context import CapturingContext
from cartera.plugins.dialers.sip_trunk.config import SipTrunkConfig
from cartera.plugins.dialers.sip_trunk.plugin import SipTrunkDialer
from tests.peers.net import free_port
from tests.peers.sip import NUMBERS, SipPeer, running_sip_peer

ANSWERS = NUMBERS[CallOutcome.ANSWERED]


@dataclass
class Run:
    name: str
    calls: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def sipp_uac(peer: SipPeer, calls: int, concurrency: int) -> Run:
    """``sipp -sn uac`` through Kamailio's IP-authenticated port; its own response times."""
    work = f"{peer.inner}/uac"
    (peer.root / work.lstrip("/")).mkdir(exist_ok=True)
    sipp = (
        f"cd {work} && exec sipp 127.0.0.1:{peer.trust_port} -sn uac -s {ANSWERS} -i 127.0.0.1 -p {free_port()} "
        f"-mp {peer.media_port + 2} -m {calls} -l {concurrency} -r 100000 -rp 1000 -trace_rtt -rtt_freq 1 "
        "-nostdin -timeout 120s"
    )
    began = time.monotonic()
    done = subprocess.run(["chroot", str(peer.root), "sh", "-c", sipp], capture_output=True, timeout=300, check=False)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"sipp uac failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    (rtt_file,) = (peer.root / work.lstrip("/")).glob("*_rtt.csv")
    rows = [line.split(";") for line in rtt_file.read_text().splitlines()[1:] if line.strip()]
    latencies = [float(row[1]) for row in rows]
    return Run("sipp -sn uac (ceiling)", calls, seconds, latencies)


def dialer(name: str, settings: dict[str, Any], calls: int) -> Run:
    """The sip_trunk dialer placing ``calls`` answered calls as capacity allows."""
    with tempfile.TemporaryDirectory() as data:
        context = CapturingContext(Path(data))
        trunk = SipTrunkDialer(SipTrunkConfig.model_validate(settings), context)
        trunk.start()
        try:
            began = time.monotonic()
            for attempt in range(1, calls + 1):
                deadline = time.monotonic() + 60
                while trunk.capacity() <= 0:
                    if time.monotonic() > deadline:
                        raise RuntimeError("no free capacity for 60 s")
                    time.sleep(0.001)
                trunk.place_call(CallRequest(attempt_id=attempt, site=context.site, phone=ANSWERS))
            results = context.wait_for_calls(calls, 600)
            seconds = time.monotonic() - began
        finally:
            trunk.stop()
    not_transferred = [result.raw_cause for result in results if "taken by the queue" not in result.raw_cause]
    if not_transferred:
        print(f"{name}: {len(not_transferred)} of {calls} calls not transferred, e.g. {not_transferred[0]}")
    latencies = [
        (result.answered_at - result.started_at).total_seconds() * 1000
        for result in results
        if result.answered_at is not None
    ]
    return Run(name, calls, seconds, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    with running_sip_peer() as peer:
        limits = {"max_calls": args.concurrency, "ring_timeout_s": 30}
        runs = [
            sipp_uac(peer, args.calls, args.concurrency),
            dialer("sip_trunk, IP-authenticated port", peer.ip_trunk_settings(**limits), args.calls),
            dialer("sip_trunk, digest-authenticated port", peer.trunk_settings(**limits), args.calls),
        ]
    ceiling = runs[0]
    print(f"{args.calls} calls, at most {args.concurrency} at once, through Kamailio to SIPp")
    print("| driver | calls/s | ratio to ceiling | setup p50 | setup p95 |")
    print("| --- | --- | --- | --- | --- |")
    for run in runs:
        print(
            f"| {run.name} | {run.rate:.1f} | {run.rate / ceiling.rate:.2f} | "
            f"{statistics.median(run.latencies_ms):.1f} ms | {run.percentile(0.95):.1f} ms |"
        )


if __name__ == "__main__":
    main()
