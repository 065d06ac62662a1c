"""The trunk's calls spread over SIP worker processes, each with its own pjsua Endpoint.

The pjsua2-pybind11 wheel's pjsua holds at most CALLS_PER_ENGINE calls per process, so ``max_calls`` channels
take ``ceil(max_calls / CALLS_PER_ENGINE)`` workers (:mod:`cartera.plugins.dialers.sip_trunk.worker`), started with
``spawn`` (never ``fork``: the node has threads). The node's process itself never loads pjsua: a worker's
crash or abort cannot take the node with it, and its calls are then reported failed.

Times come from the node's clock (which may be simulated): a call starts when placed, is answered when the
worker says so, and ends when its result arrives.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from cartera.plugin import CallOutcome, CallRequest, CallResult, CheckResult, PluginContext, event
from cartera.plugins.dialers.sip_trunk.client import SipTrunkError
from cartera.plugins.dialers.sip_trunk.config import CALLS_PER_ENGINE, SipTrunkConfig
from cartera.plugins.dialers.sip_trunk.worker import serve

log = logging.getLogger("cartera.plugin.sip_trunk")

#: Seconds a worker may take to import, start pjsua and register, on top of register_timeout_s.
START_GRACE_S = 30.0
#: Seconds a worker may take to exit after its last report.
EXIT_TIMEOUT_S = 15.0
#: Seconds cancel() waits for the worker's verdict (its engine thread decides at once).
CANCEL_TIMEOUT_S = 10.0


@dataclass
class _Placed:
    request: CallRequest
    started_at: datetime
    answered_at: datetime | None = None


@dataclass
class _Worker:
    index: int
    slots: int
    process: BaseProcess
    conn: Connection
    placed: dict[int, _Placed] = field(default_factory=dict)
    started: queue.SimpleQueue[tuple[Any, ...]] = field(default_factory=queue.SimpleQueue)
    checks: queue.SimpleQueue[tuple[Any, ...]] = field(default_factory=queue.SimpleQueue)
    cancels: dict[int, Future[bool]] = field(default_factory=dict)  # the worker's answers, by attempt
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    reader: threading.Thread | None = None

    def send(self, *message: Any) -> bool:
        with self.send_lock:
            try:
                self.conn.send(message)
            except OSError:
                return False
            return True


class SipTrunkPool:
    """The dialer's trunk: start the workers, route calls to them, collect their results. Thread-safe."""

    def __init__(self, config: SipTrunkConfig, context: PluginContext) -> None:
        self._config = config
        self._context = context
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._seen: set[int] = set()
        self._running = False
        self._stopped = False
        self.exit_codes: list[int | None] = []

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        config = self._config
        spawn = multiprocessing.get_context("spawn")
        count = math.ceil(config.max_calls / CALLS_PER_ENGINE)
        for index in range(count):
            slots = min(CALLS_PER_ENGINE, config.max_calls - index * CALLS_PER_ENGINE)
            port = config.local_port + index if config.local_port else 0
            share = config.model_copy(update={"max_calls": slots, "local_port": port})
            parent, child = spawn.Pipe()
            data_dir = self._context.data_dir / f"worker-{index}"
            data_dir.mkdir(parents=True, exist_ok=True)
            process = spawn.Process(
                target=serve, args=(child, share, self._context.site, data_dir), name=f"cartera-sip-{index}"
            )
            process.start()
            child.close()
            worker = _Worker(index, slots, process, parent)
            worker.reader = threading.Thread(target=self._read, args=(worker,), name=f"cartera-sip-read-{index}")
            worker.reader.start()
            self._workers.append(worker)
        failures = [problem for problem in map(self._await_start, self._workers) if problem]
        if failures:
            self._shut_down()
            raise SipTrunkError(failures[0])
        self._running = True
        event(log, "sip.pool_started", workers=count, max_calls=config.max_calls)

    def _await_start(self, worker: _Worker) -> str:
        try:
            message = worker.started.get(timeout=self._config.register_timeout_s + START_GRACE_S)
        except queue.Empty:
            return f"SIP worker {worker.index} did not start within {self._config.register_timeout_s + START_GRACE_S}s"
        return "" if message[0] == "started" else str(message[1])

    def stop(self) -> None:
        """Stop every worker (each hangs up its calls and reports them) and return once all were reported."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._running = False
        self._shut_down()

    def _shut_down(self) -> None:
        for worker in self._workers:
            worker.send("stop")
        for worker in self._workers:
            if worker.reader is not None:
                worker.reader.join(self._config.stop_timeout_s + EXIT_TIMEOUT_S)
            worker.process.join(EXIT_TIMEOUT_S)
            if worker.process.is_alive():
                log.error("SIP worker %s did not exit: killed", worker.index)
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
            self._fail_placed(worker, f"SIP worker {worker.index} exited ({worker.process.exitcode}) during the call")
        self.exit_codes = [worker.process.exitcode for worker in self._workers]
        if any(code != 0 for code in self.exit_codes):
            event(log, "sip.worker_exit", logging.ERROR, exit_codes=self.exit_codes)

    # --- the dialer's contract ------------------------------------------------------------------------

    def capacity(self) -> int:
        with self._lock:
            if not self._running:
                return 0
            return sum(max(0, worker.slots - len(worker.placed)) for worker in self._workers)

    def place_call(self, request: CallRequest) -> None:
        now = self._context.clock.now()
        with self._lock:
            if request.attempt_id in self._seen:
                self._context.log.warning("attempt %s was already placed: not placed twice", request.attempt_id)
                return
            self._seen.add(request.attempt_id)
            worker = self._pick() if self._running else None
            if worker is not None:
                worker.placed[request.attempt_id] = _Placed(request, now)
        if worker is None:
            self._report(_failed(request, now, "not placed: the dialer is stopped or not started"))
        elif not worker.send("call", request):
            self._fail(worker, request.attempt_id, f"not placed: SIP worker {worker.index} is gone")

    def cancel(self, attempt_id: int) -> bool:
        """Ask the attempt's worker to cancel it; the worker decides (it sees the answer first)."""
        with self._lock:
            worker = next((worker for worker in self._workers if attempt_id in worker.placed), None)
            if worker is None or not self._running or worker.placed[attempt_id].answered_at is not None:
                return False
            answer = worker.cancels.setdefault(attempt_id, Future())
        if not worker.send("cancel", attempt_id):
            return False
        try:
            return answer.result(timeout=CANCEL_TIMEOUT_S)
        except FutureTimeout:
            self._context.log.warning("attempt %s: SIP worker %s did not answer the cancel", attempt_id, worker.index)
            return False
        finally:
            with self._lock:
                if worker.cancels.get(attempt_id) is answer:
                    del worker.cancels[attempt_id]

    def check(self) -> CheckResult:
        worker = self._workers[0] if self._running else None
        if worker is None or not worker.send("check"):
            return CheckResult(False, "the SIP workers are not running")
        try:
            _, ok, detail = worker.checks.get(timeout=self._config.check_timeout_s + 10)
        except queue.Empty:
            return CheckResult(False, f"SIP worker {worker.index} did not answer the check")
        workers = len(self._workers)
        return CheckResult(bool(ok), f"{detail}; {workers} SIP worker process{'es' if workers > 1 else ''}")

    # --- results ----------------------------------------------------------------------------------------

    def _pick(self) -> _Worker | None:
        """The worker with the most free slots (the first one when all are full: pjsua then refuses the call)."""
        return max(self._workers, key=lambda worker: worker.slots - len(worker.placed), default=None)

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                worker.started.put(("failed", f"SIP worker {worker.index} exited before it started"))
                with self._lock:
                    worker.slots = 0  # no more calls for it
                    waiting = list(worker.cancels.values())
                for answer in waiting:
                    if not answer.done():
                        answer.set_result(False)
                self._fail_placed(worker, f"SIP worker {worker.index} exited during the call")
                return
            kind = message[0]
            if kind in ("started", "failed"):
                worker.started.put(message)
            elif kind == "answered":
                with self._lock:
                    placed = worker.placed.get(message[1])
                    if placed is not None and placed.answered_at is None:
                        placed.answered_at = self._context.clock.now()
            elif kind == "result":
                self._finish(worker, message[1])
            elif kind == "cancel":
                with self._lock:
                    asked = worker.cancels.get(message[1])
                if asked is not None and not asked.done():
                    asked.set_result(bool(message[2]))
            elif kind == "check":
                worker.checks.put(message)
            elif kind == "stopped":
                return

    def _finish(self, worker: _Worker, result: CallResult) -> None:
        with self._lock:
            placed = worker.placed.pop(result.attempt_id, None)
        if placed is None:
            return
        now = self._context.clock.now()
        answered_at = (placed.answered_at or now) if result.answered_at is not None else None
        self._report(dataclasses.replace(result, started_at=placed.started_at, answered_at=answered_at, ended_at=now))

    def _fail(self, worker: _Worker, attempt_id: int, note: str) -> None:
        with self._lock:
            placed = worker.placed.pop(attempt_id, None)
        if placed is not None:
            self._report(_failed(placed.request, placed.started_at, note, self._context.clock.now()))

    def _fail_placed(self, worker: _Worker, note: str) -> None:
        for attempt_id in list(worker.placed):
            self._fail(worker, attempt_id, note)

    def _report(self, result: CallResult) -> None:
        try:
            self._context.report_call(result)
        except Exception:
            self._context.log.exception("attempt %s: reporting the call failed", result.attempt_id)
        event(log, "sip.call_ended", attempt=result.attempt_id, outcome=result.outcome.value, cause=result.raw_cause)


def _failed(request: CallRequest, started_at: datetime, note: str, ended_at: datetime | None = None) -> CallResult:
    return CallResult(request.attempt_id, CallOutcome.FAILED, note, started_at, ended_at=ended_at or started_at)
