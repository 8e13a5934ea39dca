"""How everything the sim emits says it is a model, and its one time unit conversion."""

from __future__ import annotations

MODEL_NAME = "REEF-SIM"
MODEL_VERSION = "1"
SIM_TAG = "(simulated)"


def ns(us: float) -> int:
    """Microseconds -> the model's integer nanoseconds."""
    return int(round(us * 1000))


def us(ns_: int) -> float:
    """The model's integer nanoseconds -> microseconds."""
    return ns_ / 1000
