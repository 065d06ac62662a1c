"""Settings of the simulated PBX."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Self, TypeVar

from pydantic import AfterValidator, Field, NonNegativeFloat, PositiveFloat, StringConstraints, model_validator

from cartera.plugin import CallOutcome, DialRatio, DispositionCode, PluginConfig, SettingError, dial_slots

K = TypeVar("K")


def _ordered(span: tuple[float, float]) -> tuple[float, float]:
    if span[0] > span[1]:
        raise ValueError("the range must be [low, high] with low <= high")
    return span


def _some_weight(weights: dict[K, float]) -> dict[K, float]:
    if not any(weight > 0 for weight in weights.values()):
        raise ValueError("at least one weight must be positive")
    return weights


#: Outcomes the dialer makes of a call, never the network, and how.
_NOT_FROM_THE_NETWORK = {
    CallOutcome.CANCELLED: "cancel() makes of a ringing call",
    CallOutcome.ABANDONED: "the switch makes of an answered call no seat is free for ('abandon_after')",
    CallOutcome.UNKNOWN: "reconcile() makes of a call a killed node left in flight",
}


def _network_only(outcomes: Iterable[CallOutcome]) -> None:
    refused = sorted(_NOT_FROM_THE_NETWORK.keys() & set(outcomes))
    if refused:
        outcome = refused[0]
        raise ValueError(f"'{outcome}' is what {_NOT_FROM_THE_NETWORK[outcome]}, not an outcome the network gives")


def _network_weights(weights: dict[CallOutcome, float]) -> dict[CallOutcome, float]:
    _network_only(weights)
    return _some_weight(weights)


def _network_script(script: dict[str, CallOutcome]) -> dict[str, CallOutcome]:
    _network_only(script.values())
    return script


#: A ``[low, high]`` duration in seconds of the site's clock.
#: Simulated seconds a call takes, at most a day (a longer one overflows the simulation's timers).
CallSeconds = Annotated[float, Field(ge=0, le=86_400)]
SecondsRange = Annotated[tuple[CallSeconds, CallSeconds], AfterValidator(_ordered)]
E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
#: A seat's name: the agent's identity at the simulated PBX, as a workspace user's extension names it.
SeatName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@/-]{0,63}$")]

#: A Latin-American collections list: roughly a third answered, many unanswered or unreachable lines.
DEFAULT_OUTCOME_WEIGHTS: dict[CallOutcome, float] = {
    CallOutcome.ANSWERED: 0.35,
    CallOutcome.NO_ANSWER: 0.33,
    CallOutcome.BUSY: 0.12,
    CallOutcome.REJECTED: 0.05,
    CallOutcome.INVALID_NUMBER: 0.05,
    CallOutcome.CONGESTION: 0.05,
    CallOutcome.FAILED: 0.05,
}

DEFAULT_DISPOSITION_WEIGHTS: dict[DispositionCode, float] = {
    DispositionCode.RIGHT_PARTY_CONTACT: 0.30,
    DispositionCode.PROMISE_TO_PAY: 0.25,
    DispositionCode.REFUSED_TO_PAY: 0.15,
    DispositionCode.WRONG_PARTY: 0.15,
    DispositionCode.CALLBACK_REQUESTED: 0.15,
}


class SimulatorConfig(PluginConfig):
    agents: int = Field(
        default=4, ge=1, le=500, description="Agents logged in to the simulated campaign, unless 'seats' names them."
    )
    seats: tuple[SeatName, ...] = Field(
        default=(),
        description="The agents' seats by name (each agent's identity at this PBX, as a workspace user's extension "
        "names it); by default agent-01, agent-02... one per agent. Given, they are the agents.",
    )
    dial_ratio: DialRatio = Field(default=1.5, description="Calls dialled per agent (predictive over-dialling).")
    outcome_weights: Annotated[dict[CallOutcome, NonNegativeFloat], AfterValidator(_network_weights)] = Field(
        default_factory=lambda: dict(DEFAULT_OUTCOME_WEIGHTS),
        description="Relative weight of each outcome for numbers not in 'scripted'; unlisted outcomes weigh 0.",
    )
    ring_seconds: SecondsRange = Field(
        default=(3.0, 25.0),
        description="How long a call rings before it is answered or rejected; the high end is the no-answer timeout.",
    )
    talk_seconds: SecondsRange = Field(
        default=(20.0, 240.0), description="How long an answered call lasts, from answer to hang-up."
    )
    abandon_after: PositiveFloat | None = Field(
        default=None,
        le=86_400,
        description="Seconds an answered call waits for a free seat before it is abandoned (the identification "
        "message played, then hung up): 2 as the US rule counts; unset, it waits until a seat is free. A call never "
        "goes to a seat on a call or paused (in wrap-up, on a break), as a real ACD.",
    )
    identification_seconds: NonNegativeFloat = Field(
        default=4.0,
        le=3600,
        description="How long the identification message of an abandoned call lasts (at most 3600 seconds).",
    )
    scripted: Annotated[dict[E164, CallOutcome], AfterValidator(_network_script)] = Field(
        default_factory=dict,
        description="Fixed outcome per E.164 number, for deterministic tests and demos.",
    )
    seed: int | None = Field(
        default=None, description="Seed of the simulation: the same seed gives each attempt the same call."
    )
    record: bool = Field(default=True, description="Write a WAV recording of every answered call.")
    disposition_weights: Annotated[dict[DispositionCode, NonNegativeFloat], AfterValidator(_some_weight)] = Field(
        default_factory=lambda: dict(DEFAULT_DISPOSITION_WEIGHTS),
        description="Relative weight of each agent disposition for answered calls; unlisted codes weigh 0.",
    )

    @model_validator(mode="after")
    def _one_seat_per_agent(self) -> Self:
        if len(set(self.seats)) != len(self.seats):
            raise SettingError("a seat is named twice", "seats")
        if self.seats and "agents" in self.model_fields_set and len(self.seats) != self.agents:
            raise SettingError(
                f"{len(self.seats)} seats for {self.agents} agents: name one seat per agent, or leave agents out",
                "seats",
            )
        return self

    @property
    def seat_names(self) -> tuple[str, ...]:
        """The seats, one per agent: as configured, else ``agent-01``, ``agent-02``..."""
        return self.seats or tuple(f"agent-{n:02d}" for n in range(1, self.agents + 1))

    @property
    def slots(self) -> int:
        """Calls the switch carries at once: agents times dial ratio, rounded down."""
        return dial_slots(len(self.seat_names), self.dial_ratio)
