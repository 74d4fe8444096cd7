"""Delta debugging (pure): the smallest part of a failing input that still fails.

`ddmin` is Zeller and Hildebrandt's algorithm ("Simplifying and Isolating Failure-Inducing
Input", 2002): split the input in n parts, keep a part or a complement that still fails,
otherwise split finer. The result is 1-minimal: removing any single item makes the failure
go away. `fails` is the only I/O (a replay), passed in by the caller.

Properties are conditions on a replay's summary (harness.analysis.replay.replay_summary),
with names for the common ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from harness.expectations import Condition, parse_condition

T = TypeVar("T")
PROPERTIES = {
    "no session loses state": "state_lost_sessions == 0",
    "no session splits": "split_sessions == 0",
    "no errors": "error_sessions == 0",
    "no session breaks": "broken_sessions == 0",
}
SUMMARY_KEYS = ("requests", "sessions", "broken_sessions", "split_sessions",
                "state_lost_sessions", "error_sessions", "errors", "replicas_used",
                "max_load_share")


def parse_property(text: str) -> Condition:
    """A named property ('no session loses state') or a condition on the replay summary
    ('state_lost_sessions == 0'); the property holds when the condition does."""
    condition = parse_condition(PROPERTIES.get(text.strip().lower(), text))
    if condition.metric not in SUMMARY_KEYS:
        raise ValueError(f"unknown metric {condition.metric!r}; expected one of "
                         f"{', '.join(SUMMARY_KEYS)} or a named property: "
                         f"{'; '.join(PROPERTIES)}")
    return condition


def ddmin(items: Sequence[T], fails: Callable[[list[T]], bool],
          on_step: Callable[[int, int], None] | None = None) -> list[T]:
    """A 1-minimal sublist of `items` (order kept) for which `fails` is still true.
    `fails(list(items))` must be true; `on_step(size, tests)` reports progress."""
    current = list(items)
    n, tests = 2, 0
    while len(current) >= 2:
        size = len(current)
        bounds = [size * i // n for i in range(n + 1)]
        chunks = [current[bounds[i]:bounds[i + 1]] for i in range(n)]
        reduced = False
        for i, chunk in enumerate(chunks):
            tests += 1
            if chunk and fails(chunk):
                current, n, reduced = chunk, 2, True
                break
            complement = [x for j, c in enumerate(chunks) if j != i for x in c]
            if n > 2:
                tests += 1
                if complement and fails(complement):
                    current, n, reduced = complement, max(n - 1, 2), True
                    break
        if on_step:
            on_step(len(current), tests)
        if not reduced:
            if n >= size:
                break
            n = min(n * 2, size)
    return current
