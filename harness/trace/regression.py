"""Replay a (small) trace through a topology and judge a property: what `stickler shrink`
asks of every candidate, and what the regression tests it writes call.

A regression test file is generated beside its minimal trace under suites/regressions/:
one test that the failure still reproduces on the topology it was found on, and, given a
fixed topology, one that the property holds there.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.analysis.replay import broken_sessions, replay_summary
from harness.trace.format import TraceRecord
from harness.trace.replay import Replayer

ROOT = Path(__file__).resolve().parents[2]


def judge(cluster: Any, records: Sequence[TraceRecord], prop: Any, *, speed: float = math.inf,
          concurrency: int = 8) -> tuple[bool, dict[str, float], list]:
    """(holds, summary, broken sessions) of one replay of `records` through `cluster`."""
    result = Replayer(cluster.url, speed=speed, concurrency=concurrency,
                      transport=cluster.topology.client_ip,
                      tls_ca=cluster.topology.tls_ca).run(list(records))
    broken = broken_sessions(result.records)
    summary = replay_summary(result.records, broken)
    return prop.holds(summary), summary, broken


def check(trace: str | Path, topology: str | Path, prop_text: str, *,
          runtime: str = "processes", runs: int = 3) -> tuple[bool, dict[str, float]]:
    """Whether `prop_text` held in every one of `runs` replays of `trace` through
    `topology`, and the summary of the first replay where it did not (or of the last)."""
    from harness.runtime import start
    from harness.topology import load_topology
    from harness.trace.io import read_trace
    from harness.trace.shrink import parse_property

    prop = parse_property(prop_text)
    with read_trace(trace) as reader:
        records = list(reader)
    loaded = load_topology(topology)
    with start(loaded, runtime) as cluster:
        summary: dict[str, float] = {}
        for _ in range(runs):
            holds, summary, _ = judge(cluster, records, prop)
            if not holds:
                return False, summary
    return True, summary


TEST_TEMPLATE = '''"""{doc}
"""

from pathlib import Path

import pytest

from harness.trace.regression import ROOT, check

TRACE = Path(__file__).with_name("{trace_name}")
PROPERTY = {property!r}
{runs_comment}
RUNS = {runs}
BAD = ROOT / {bad!r}{fixed_constant}


@pytest.fixture
def runtime():
    """processes; under suites/, --runtime chooses (suites/conftest.py parametrizes it)."""
    return "processes"


def test_the_failure_reproduces_on_{bad_id}(runtime):
    holds, summary = check(TRACE, BAD, PROPERTY, runtime=runtime, runs=RUNS)
    assert not holds, f"{{PROPERTY}} now holds on {bad_name}: {{summary}}"
{fixed_test}'''

FIXED_TEMPLATE = '''

def test_the_property_holds_on_{fixed_id}(runtime):
    holds, summary = check(TRACE, FIXED, PROPERTY, runtime=runtime, runs=RUNS)
    assert holds, f"{{PROPERTY}} fails on {fixed_name}: {{summary}}"
'''


def runs_needed(failed: int, reruns: int, miss: float = 1e-4, cap: int = 50) -> int:
    """Replays a regression needs so that a failure seen in `failed` of `reruns` replays
    shows in one at least, but for a chance of about `miss` (3 to `cap`). The rate is
    taken one failure lower than measured: ten reruns do not tell 8 in 10 from 2 in 3."""
    rate = max(failed - 1, 1) / reruns
    if rate >= 1:
        return 3
    return max(3, min(cap, math.ceil(math.log(miss) / math.log(1 - rate))))


def _identifier(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def _relative(path: str | Path) -> str:
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(ROOT))
    except ValueError:
        return str(resolved)


def test_source(*, trace_name: str, prop: str, bad: str | Path, bad_name: str,
                fixed: str | Path | None, fixed_name: str | None, source: str,
                original: int, size: int, command: str, runs: int = 3,
                runs_why: str = "replays: the failure shows in one at least") -> str:
    fixed_test = fixed_constant = ""
    if fixed is not None:
        fixed_test = FIXED_TEMPLATE.format(fixed_id=_identifier(fixed_name or "fixed"),
                                           fixed_name=fixed_name)
        fixed_constant = f"\nFIXED = ROOT / {_relative(fixed)!r}"
    fixed_line = f", fixed by {fixed_name}" if fixed else ""
    doc = "\n".join([
        *textwrap.wrap(f"Regression: {prop!r} fails on {trace_name}, shrunk by `stickler "
                       f"shrink` from {source} ({original} requests) to {size} requests. "
                       f"Found on {bad_name}{fixed_line}.", 92),
        "", "Rerun the shrink:", *textwrap.wrap(command, 88, initial_indent="    ",
                                                 subsequent_indent="    ",
                                                 break_on_hyphens=False)])
    return TEST_TEMPLATE.format(
        doc=doc, property=prop, trace_name=trace_name, bad_name=bad_name,
        bad_id=_identifier(bad_name), bad=_relative(bad), fixed_test=fixed_test,
        fixed_constant=fixed_constant, runs=runs,
        runs_comment="\n".join(textwrap.wrap(runs_why, 96, initial_indent="# ",
                                             subsequent_indent="# ")))
