"""How many calls to place now: pure, clock-agnostic pacers, run on a simulated floor in bench/bench_pacing.py."""

from cartera.contact.pacing.budget import AbandonBudget
from cartera.contact.pacing.estimates import Estimates
from cartera.contact.pacing.fixed import ProgressivePacer, RatioPacer
from cartera.contact.pacing.floor import (
    ABANDON_AFTER,
    AgentCycle,
    DialEnded,
    Floor,
    LiveCallSettled,
    Pacer,
    PacingEvent,
)
from cartera.contact.pacing.predictive import PredictivePacer, PredictiveSettings
from cartera.contact.pacing.vicidial import AdaptSettings, VicidialPacer

__all__ = [
    "ABANDON_AFTER",
    "AbandonBudget",
    "AdaptSettings",
    "AgentCycle",
    "DialEnded",
    "Estimates",
    "Floor",
    "LiveCallSettled",
    "Pacer",
    "PacingEvent",
    "PredictivePacer",
    "PredictiveSettings",
    "ProgressivePacer",
    "RatioPacer",
    "VicidialPacer",
]
