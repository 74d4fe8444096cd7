"""Command-line value types that refuse what no option means: NaN, infinities, numbers out
of range. argparse names the option in its error and exits 2, as for any bad input."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

UTC_OFFSET = re.compile(r"^([+-])?(\d{1,2}):(\d{2})$")


def number(low: float | None = None, high: float | None = None, *,
           above: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] (or (low, high] with `above`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value < low or (above and value == low)):
            raise argparse.ArgumentTypeError(
                f"expected a number {'above' if above else 'at least'} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:g}, got {text}")
        return value

    return parse


seconds = number(0, 366 * 86400.0, above=True)  # a positive duration, up to a year
window = number(0, 366 * 86400.0)  # 0 or more seconds


def utc_offset(text: str) -> float:
    """Hours east of UTC, as a number (-8, 5.5) or as ISO 8601 writes it (-08:00, +05:30),
    within the offsets time zones have (-14 to +14)."""
    match = UTC_OFFSET.match(text.strip())
    if match:
        sign = -1 if match[1] == "-" else 1
        hours, minutes = int(match[2]), int(match[3])
        if minutes >= 60:
            raise argparse.ArgumentTypeError(f"expected minutes below 60, got {text!r}")
        value = sign * (hours + minutes / 60)
    else:
        try:
            value = number()(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected hours east of UTC, such as -8, 5.5, -08:00 or +05:30; got "
                f"{text!r}") from None
    if not -14 <= value <= 14:
        raise argparse.ArgumentTypeError(f"expected an offset from -14 to +14 hours, got "
                                         f"{text!r}")
    return value
