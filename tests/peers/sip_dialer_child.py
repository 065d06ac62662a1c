"""The sip_trunk dialer in a process of its own, for tests that check how that process exits.

``python -m tests.peers.sip_dialer_child SPEC.json`` starts the dialer with the spec's ``settings``, places a
call to each of its ``numbers`` (as capacity allows), then either waits for every result or, with
``stop_after_s``, stops the dialer that long after the last call was placed (calls still in progress). It
writes the results to the spec's ``results`` file as JSON and returns normally: the test asserts exit code 0.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cartera.core.models import CallRequest
from cartera.core.testing.context import CapturingContext
from cartera.plugins.dialers.sip_trunk.config import SipTrunkConfig
from cartera.plugins.dialers.sip_trunk.plugin import SipTrunkDialer


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    context = CapturingContext(Path(spec["data_dir"]))
    dialer = SipTrunkDialer(SipTrunkConfig.model_validate(spec["settings"]), context)
    dialer.start()
    numbers: list[str] = spec["numbers"]
    for attempt, phone in enumerate(numbers, start=1):
        deadline = time.monotonic() + 30
        while dialer.capacity() <= 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        dialer.place_call(CallRequest(attempt_id=attempt, site=context.site, phone=phone))
    if spec.get("stop_after_s") is not None:
        time.sleep(spec["stop_after_s"])
        in_progress = len(numbers) - len(context.calls)
    else:
        context.wait_for_calls(len(numbers), spec.get("timeout_s", 60))
        in_progress = 0
    dialer.stop()
    results = [
        {
            "attempt": r.attempt_id,
            "outcome": r.outcome.value,
            "cause": r.raw_cause,
            "answered": r.answered_at is not None,
        }
        for r in context.calls
    ]
    outcome = {"in_progress_at_stop": in_progress, "calls": results, "worker_exit_codes": dialer.worker_exit_codes}
    Path(spec["results"]).write_text(json.dumps(outcome))


if __name__ == "__main__":
    main(sys.argv[1])
