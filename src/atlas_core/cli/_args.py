"""Argument types that refuse nonsensical numbers at the command line (argparse prints the
option and the reason), so `--budget 0` never silently means "the default"."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(
    cast: Callable[[str], float], test: Callable[[float], bool], rule: str
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if math.isnan(value) or not test(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    parse.__name__ = rule  # argparse names the type in its messages
    return parse


positive = _number(float, lambda v: v > 0, "more than 0")
not_negative = _number(float, lambda v: v >= 0, "0 or more")
count = _number(int, lambda v: v >= 0, "a whole number, 0 or more")
positive_count = _number(int, lambda v: v > 0, "a whole number, more than 0")
fraction = _number(float, lambda v: 0 <= v <= 1, "between 0 and 1")
percent = _number(float, lambda v: 0 < v <= 100, "more than 0 and at most 100")
