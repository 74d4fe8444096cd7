"""The replay schedule (pure, sans-I/O): when each request of a trace is due, on an open
model, and the lag between when it was due and when it went out.

- Open model: a request is due at `start + t / speed` whatever happened to the requests
  before it (speed 1 keeps the recorded timing, 10 is ten times faster, `math.inf` sends as
  fast as possible). Lag is measured from that due time, so a slow balancer or a full
  client shows as lag instead of silently stretching the schedule (no coordinated
  omission).
- A session is sequential: its next request waits until the previous one completed (its
  cookies come from that response), then goes out at once if it is already due.
- Concurrency is bounded: at most `max_in_flight` requests at once; due requests queue
  (and their lag grows) when all slots are busy.

The caller owns time and sockets: it asks `due(now)` for what to send, reports each
`completed(dispatch, now)`, and sleeps until `next_wakeup()` or a completion. `simulate`
runs a schedule on virtual time (for tests and for planning).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from harness.trace.format import TraceRecord


@dataclass
class Dispatch:
    record: TraceRecord
    due: float  # when the open model wanted it sent
    sent: float  # when it was handed out
    number: int  # position in the order of dispatch, from 0

    @property
    def lag(self) -> float:
        return self.sent - self.due


@dataclass
class LagStats:
    lags: list[float] = field(default_factory=list)

    def add(self, lag: float) -> None:
        self.lags.append(lag)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100); 0.0 for no requests."""
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]

    def summary(self) -> dict[str, float]:
        return {"requests": len(self.lags), "lag_p50_s": self.percentile(50),
                "lag_p99_s": self.percentile(99), "lag_max_s": max(self.lags, default=0.0)}


class ReplaySchedule:
    def __init__(self, records: Iterable[TraceRecord], *, start: float, speed: float = 1.0,
                 max_in_flight: int = 64):
        if not speed > 0:
            raise ValueError(f"speed must be positive (math.inf: as fast as possible), "
                             f"got {speed}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.start, self.speed, self.max_in_flight = start, speed, max_in_flight
        self._source: Iterator[TraceRecord] = iter(records)
        self._next: TraceRecord | None = next(self._source, None)
        self._order = itertools.count()
        self._ready: list[tuple[float, int, TraceRecord]] = []  # heap by due time
        self._behind: dict[str, deque[TraceRecord]] = {}  # waiting for their session
        self._busy: set[str] = set()  # sessions with a request ready or in flight
        self.in_flight = 0
        self.dispatched = 0
        self.lag = LagStats()

    def due_time(self, record: TraceRecord) -> float:
        offset = 0.0 if math.isinf(self.speed) else max(record.t, 0.0) / self.speed
        return self.start + offset

    def _admit(self, record: TraceRecord) -> None:
        if record.session in self._busy:
            self._behind.setdefault(record.session, deque()).append(record)
        else:
            self._busy.add(record.session)
            heapq.heappush(self._ready, (self.due_time(record), next(self._order), record))

    def _pull(self, now: float) -> None:
        # Read the trace only as far as now: memory follows the requests in flight and
        # queued, not the trace's length.
        while self._next is not None and self.due_time(self._next) <= now:
            self._admit(self._next)
            self._next = next(self._source, None)

    def due(self, now: float) -> list[Dispatch]:
        """The requests to send at `now`, oldest due first; each is then in flight."""
        self._pull(now)
        out = []
        while self._ready and self._ready[0][0] <= now and self.in_flight < self.max_in_flight:
            due, _, record = heapq.heappop(self._ready)
            dispatch = Dispatch(record, due, now, self.dispatched)
            self.dispatched += 1
            self.in_flight += 1
            self.lag.add(dispatch.lag)
            out.append(dispatch)
        return out

    def completed(self, dispatch: Dispatch, now: float) -> None:
        """The response to `dispatch` arrived (or it failed): free its slot and session."""
        self.in_flight -= 1
        session = dispatch.record.session
        behind = self._behind.get(session)
        if behind:
            record = behind.popleft()
            if not behind:
                del self._behind[session]
            heapq.heappush(self._ready, (self.due_time(record), next(self._order), record))
        else:
            self._busy.discard(session)

    def next_wakeup(self) -> float | None:
        """When something next becomes due; None when only a completion can help (all slots
        busy, or every queued request waits for its session) or when all is sent."""
        times = []
        if self._ready and self.in_flight < self.max_in_flight:
            times.append(self._ready[0][0])
        if self._next is not None:
            times.append(self.due_time(self._next))
        return min(times) if times else None

    @property
    def finished(self) -> bool:
        return (self._next is None and not self._ready and not self._behind
                and self.in_flight == 0)


def simulate(schedule: ReplaySchedule, service_time: Callable[[TraceRecord], float]
             ) -> list[Dispatch]:
    """Run `schedule` on virtual time: each request takes `service_time(record)` seconds.
    Returns the dispatches in the order they went out."""
    now = schedule.start
    completions: list[tuple[float, int, Dispatch]] = []
    sent: list[Dispatch] = []
    while not schedule.finished:
        for dispatch in schedule.due(now):
            sent.append(dispatch)
            heapq.heappush(completions, (now + service_time(dispatch.record),
                                         dispatch.number, dispatch))
        wakeup = schedule.next_wakeup()
        if completions and (wakeup is None or completions[0][0] <= wakeup):
            now, _, done = heapq.heappop(completions)
            schedule.completed(done, now)
        elif wakeup is not None:
            now = max(now, wakeup)
        elif not schedule.finished:
            raise RuntimeError("schedule stalled: nothing due, nothing in flight")
    return sent
