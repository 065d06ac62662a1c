"""The simulated switch: places calls on worker threads, in the time of the site's clock.

Each attempt draws its fate from its own random stream (``seed`` and ``attempt_id``), so a seeded
simulation gives an attempt the same outcome whatever the order or concurrency of the calls.
"""

from __future__ import annotations

import itertools
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from cartera.plugin import (
    AgentConnected,
    CallOutcome,
    CallRequest,
    CallResult,
    Disposition,
    DispositionCode,
    PluginContext,
    Recording,
    Seat,
    SeatState,
    UnknownAgent,
    dial_slots,
    time_zones,
)
from cartera.plugins.dialers.simulator.audio import RATE, conversation, write_wav
from cartera.plugins.dialers.simulator.config import SimulatorConfig

#: Q.850 cause code and name, as Asterisk reports them in HANGUPCAUSE, per outcome.
RAW_CAUSES: dict[CallOutcome, str] = {
    CallOutcome.ANSWERED: "16 NORMAL_CLEARING",
    CallOutcome.BUSY: "17 USER_BUSY",
    CallOutcome.NO_ANSWER: "19 NO_ANSWER",
    CallOutcome.REJECTED: "21 CALL_REJECTED",
    CallOutcome.INVALID_NUMBER: "1 UNALLOCATED_NUMBER",
    CallOutcome.CONGESTION: "34 NO_CIRCUIT_AVAILABLE",
    CallOutcome.FAILED: "38 NETWORK_OUT_OF_ORDER",
    CallOutcome.MACHINE: "16 NORMAL_CLEARING, answering machine",
}
STOPPED_CAUSE = "dialer stopped"
SHUTDOWN_CAUSE = "shutdown"
CANCELLED_CAUSE = "cancelled by the dialer while ringing"
UNKNOWN_SEAT_CAUSE = "no such seat"
ABANDONED_CAUSE = "no free seat in time: identification message played, then hung up"

_SIGNALLING_S = (0.5, 3.0)  # how soon the network answers busy, unallocated, congested or failed
_SEAT_POLL_S = 0.1  # how often (clock seconds) an answered call looks for a free seat
_POLL_REAL_S = 0.05  # how often (real seconds) a call in progress looks whether the switch is stopping
_PROMISE_FRACTIONS = ("0.10", "0.15", "0.20", "0.25", "0.30", "0.50", "1")
_channels = itertools.count(1)  # Asterisk-like channel counter of the process, for unique ids


class SimulatedSwitch:
    """A PBX with ``agents`` agents (its seats) dialling ``dial_ratio`` lines each for every agent not paused;
    thread-safe."""

    def __init__(self, config: SimulatorConfig, context: PluginContext) -> None:
        self._config = config
        self._context = context
        self._seed = config.seed if config.seed is not None else random.SystemRandom().getrandbits(64)
        self._monitor = context.data_dir / "monitor"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight: set[int] = set()
        self._settled: set[int] = set()  # calls in flight past their ringing: answered, or ending otherwise
        self._cancelled: set[int] = set()
        self._agent_calls = dict.fromkeys(config.seat_names, 0)
        self._paused: set[str] = set()
        self._agent_freed = dict.fromkeys(self._agent_calls, 0)  # order in which agents last hung up
        self._agent_since = dict.fromkeys(self._agent_calls, context.clock.now())  # each seat's state since
        self._hang_ups = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=config.slots, thread_name_prefix="simulator-call")

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def capacity(self) -> int:
        """Seats not paused times the dial ratio, minus the calls in flight."""
        with self._lock:
            ready = len(self._agent_calls) - len(self._paused)
            return max(0, dial_slots(ready, self._config.dial_ratio) - len(self._in_flight))

    def seats(self) -> list[Seat]:
        """Each seat: on a call, else paused or ready (the simulated agents need no wrap-up)."""
        with self._lock:
            return [Seat(name, self._seat_state(name), self._agent_since[name]) for name in self._agent_calls]

    def _seat_state(self, name: str) -> SeatState:
        if self._agent_calls[name]:
            return SeatState.ON_CALL
        return SeatState.PAUSED if name in self._paused else SeatState.READY

    def pause_agent(self, agent: str, reason: str) -> None:
        """Offer the seat no answered call until it is resumed."""
        with self._lock:
            self._known(agent)
            self._set_paused(agent, paused=True)
        self._context.log.info("seat %s paused: %s", agent, reason)

    def resume_agent(self, agent: str) -> None:
        with self._lock:
            self._known(agent)
            self._set_paused(agent, paused=False)

    def _set_paused(self, agent: str, *, paused: bool) -> None:
        """Under the lock: pause or resume the seat, its state's start moved when the state changes."""
        before = self._seat_state(agent)
        (self._paused.add if paused else self._paused.discard)(agent)
        if self._seat_state(agent) is not before:
            self._agent_since[agent] = self._context.clock.now()

    def _known(self, agent: str) -> None:
        if agent not in self._agent_calls:
            raise UnknownAgent(f"the simulator has no seat {agent!r} (seats: {', '.join(self._agent_calls)})")

    def place_call(self, request: CallRequest) -> None:
        """Queue the call on a worker; after :meth:`stop`, or for a seat (``request.agent``) the switch does not
        have, report it failed at once instead."""
        cause = STOPPED_CAUSE
        with self._lock:
            if request.attempt_id in self._in_flight:
                self._context.log.warning("attempt %s is already in progress: not placed twice", request.attempt_id)
                return
            if request.agent is not None and request.agent not in self._agent_calls:
                cause = f"{UNKNOWN_SEAT_CAUSE} {request.agent!r}"
            elif not self._stopping.is_set():
                self._in_flight.add(request.attempt_id)
                self._pool.submit(self._run, request)
                return
        now = self._context.clock.now()
        self._context.report_call(CallResult(request.attempt_id, CallOutcome.FAILED, cause, now, ended_at=now))

    def cancel(self, attempt_id: int) -> bool:
        """Cut the call short while it rings (it then ends as cancelled); ``False`` once its ringing is over."""
        with self._lock:
            if attempt_id not in self._in_flight or attempt_id in self._settled:
                return False
            self._cancelled.add(attempt_id)
            return True

    def stop(self) -> None:
        """Refuse new calls, cut those in progress short and return once every one was reported."""
        with self._lock:
            self._stopping.set()
        self._pool.shutdown(wait=True)

    # --- one call, on a worker thread -----------------------------------------------------------------

    def _run(self, request: CallRequest) -> None:
        """The call's line is free before its end is reported: a campaign tick the end wakes can use it."""
        try:
            result = self._simulate(request)
        finally:
            with self._lock:
                self._in_flight.discard(request.attempt_id)
                self._settled.discard(request.attempt_id)
                self._cancelled.discard(request.attempt_id)
        self._context.report_call(result)

    def _simulate(self, request: CallRequest) -> CallResult:
        config, clock = self._config, self._context.clock
        rng = random.Random(f"{self._seed}/{request.attempt_id}")
        started = clock.now()
        call_id = f"{int(started.timestamp())}.{next(_channels)}"
        outcome = config.scripted.get(request.phone)
        if outcome is None:
            weights = config.outcome_weights
            outcome = rng.choices(list(weights), list(weights.values()))[0]
        rang = self._elapse(self._ring_time(outcome, rng), request.attempt_id)
        with self._lock:
            cancelled = request.attempt_id in self._cancelled
            self._settled.add(request.attempt_id)
        if cancelled:
            outcome, cause = CallOutcome.CANCELLED, CANCELLED_CAUSE
        elif not rang:
            outcome, cause = CallOutcome.FAILED, SHUTDOWN_CAUSE
        else:
            cause = RAW_CAUSES[outcome]
        if outcome is not CallOutcome.ANSWERED:
            return CallResult(request.attempt_id, outcome, cause, started, ended_at=clock.now(), vendor_call_id=call_id)
        answered = clock.now()
        agent = self._take_agent(request.agent) if request.agent else self._free_seat()
        if agent is None:  # no seat in time; without abandon_after, a stop ended the caller's wait
            abandoned = config.abandon_after is not None
            if abandoned:
                self._elapse(config.identification_seconds)
            outcome, cause = (
                (CallOutcome.ABANDONED, ABANDONED_CAUSE) if abandoned else (CallOutcome.FAILED, SHUTDOWN_CAUSE)
            )
            return CallResult(request.attempt_id, outcome, cause, started, ended_at=clock.now(), vendor_call_id=call_id)
        self._context.report_agent_connected(AgentConnected(request.attempt_id, agent, clock.now()))
        low, high = config.talk_seconds
        self._elapse(rng.triangular(low, high, low + (high - low) * 0.3))
        ended = clock.now()
        self._release_agent(agent)
        disposition = self._disposition(rng, request, answered)
        if config.record:
            self._record(rng, request, call_id=call_id, agent=agent, answered=answered, ended=ended)
        return CallResult(
            request.attempt_id,
            CallOutcome.ANSWERED,
            cause,
            started,
            answered_at=answered,
            ended_at=ended,
            agent=agent,
            vendor_call_id=call_id,
            disposition=disposition,
        )

    def _ring_time(self, outcome: CallOutcome, rng: random.Random) -> float:
        """Seconds from dialling to the answer, the rejection or the network's verdict."""
        low, high = self._config.ring_seconds
        if outcome is CallOutcome.ANSWERED:
            return rng.triangular(low, high, low + (high - low) / 4)
        if outcome is CallOutcome.NO_ANSWER:
            return high
        if outcome is CallOutcome.REJECTED:
            return rng.uniform(low, high)
        return rng.uniform(*_SIGNALLING_S)

    def _elapse(self, seconds: float, ringing: int | None = None) -> bool:
        """Let ``seconds`` of clock time pass; ``False`` when the switch started stopping meanwhile, or the call
        ``ringing`` (an attempt id) was cancelled."""
        clock = self._context.clock
        deadline = clock.now() + timedelta(seconds=seconds)
        real_per_second = clock.real_seconds(1.0)
        step = _POLL_REAL_S / real_per_second if real_per_second > 0 else seconds
        while not self._stopping.is_set() and ringing not in self._cancelled:
            remaining = (deadline - clock.now()).total_seconds()
            if remaining <= 0:
                return True
            clock.sleep(min(remaining, step))
        return False

    def _take_agent(self, wanted: str) -> str:
        """The seat an agent's own call was placed for (paused for it while it rang)."""
        with self._lock:
            self._occupy(wanted)
        return wanted

    def _free_seat(self) -> str | None:
        """The longest idle seat not paused (on a break, in wrap-up, ringing its own call) and not on a call, as
        an ACD connects a queued call: never a busy seat. Waits for one ``abandon_after`` seconds of the clock, or
        without it as long as it takes; ``None`` when none freed in time (or the switch started stopping)."""
        clock, wait = self._context.clock, self._config.abandon_after
        deadline = None if wait is None else clock.now() + timedelta(seconds=wait)
        while True:
            with self._lock:
                free = [name for name, calls in self._agent_calls.items() if not calls and name not in self._paused]
                if free:
                    agent = min(free, key=self._agent_freed.__getitem__)
                    self._occupy(agent)
                    return agent
            remaining = _SEAT_POLL_S if deadline is None else (deadline - clock.now()).total_seconds()
            if remaining <= 0 or not self._elapse(min(remaining, _SEAT_POLL_S)):
                return None

    def _occupy(self, agent: str) -> None:
        """Under the lock: one more call on the seat."""
        if not self._agent_calls[agent]:
            self._agent_since[agent] = self._context.clock.now()
        self._agent_calls[agent] += 1

    def _release_agent(self, agent: str) -> None:
        with self._lock:
            self._agent_calls[agent] -= 1
            self._agent_freed[agent] = next(self._hang_ups)
            if not self._agent_calls[agent]:
                self._agent_since[agent] = self._context.clock.now()

    def _disposition(self, rng: random.Random, request: CallRequest, answered: datetime) -> Disposition:
        weights = self._config.disposition_weights
        code = rng.choices(list(weights), list(weights.values()))[0]
        if code is not DispositionCode.PROMISE_TO_PAY:
            return Disposition(code)
        due = _local_date(request.phone, answered) + timedelta(days=rng.randint(3, 15))
        fraction = Decimal(rng.choice(_PROMISE_FRACTIONS))
        amount = self._promised_amount(request, fraction)
        note = f"promised {fraction:.0%} of the balance" if amount is not None else "promised a payment"
        return Disposition(code, promised_amount=amount, promised_date=due, note=note)

    def _promised_amount(self, request: CallRequest, fraction: Decimal) -> Decimal | None:
        raw = request.variables.get("balance")
        if raw is None:
            return None
        try:
            balance = Decimal(raw)
        except InvalidOperation:
            self._context.log.warning("attempt %s: balance %r is not a decimal", request.attempt_id, raw)
            return None
        if not balance.is_finite() or balance <= 0:
            return None
        exponent = balance.as_tuple().exponent
        unit = Decimal(1).scaleb(min(int(exponent), 0))
        return (balance * fraction).quantize(unit, rounding=ROUND_HALF_UP)

    def _record(
        self,
        rng: random.Random,
        request: CallRequest,
        *,
        call_id: str,
        agent: str,
        answered: datetime,
        ended: datetime,
    ) -> None:
        frames = round((ended - answered).total_seconds() * RATE)
        path = self._monitor / f"{call_id}.wav"
        try:
            self._monitor.mkdir(parents=True, exist_ok=True)
            write_wav(path, conversation(rng, frames))
        except OSError as exc:
            self._context.log.error("attempt %s: recording %s not written: %s", request.attempt_id, path, exc)
            return
        self._context.report_recording(
            Recording(
                path,
                request.attempt_id,
                started_at=answered,
                duration_s=frames / RATE,
                agent=agent,
                vendor_call_id=call_id,
            )
        )


def _local_date(phone: str, moment: datetime) -> date:
    """The date at ``moment`` where the number rings (UTC when its zone is unknown)."""
    zones: tuple[tzinfo, ...] = time_zones(phone) or (UTC,)
    return moment.astimezone(zones[0]).date()
