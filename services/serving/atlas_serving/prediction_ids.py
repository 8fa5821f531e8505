"""Prediction ids: 32 hex digits, the creation time in milliseconds (12) then 80 random bits.
The time lets an id be recognised as expired after its index row was pruned."""

from __future__ import annotations

import os
import time

_TIME_DIGITS = 12


def new_prediction_id() -> str:
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


def prediction_time_us(prediction_id: str) -> int | None:
    """The creation time of an id made by :func:`new_prediction_id`, None if malformed."""
    if len(prediction_id) != 32:
        return None
    try:
        int(prediction_id, 16)
    except ValueError:
        return None
    return int(prediction_id[:_TIME_DIGITS], 16) * 1000
