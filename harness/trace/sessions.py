"""Session bookkeeping of an imported trace (pure, streaming):

- `link_first_requests`: a session's first request carries no session cookie (the
  response sets it), so a log gives it the client-IP key. When the next cookie-keyed
  request from the same client IP, within `window` seconds, brings a session cookie never
  seen before, the latest waiting request of that client joins that session (earlier
  ones, such as a probe from the same address, keep the client-IP key). A waiting
  request is held back at most `window` seconds of trace time (memory is bounded by the
  traffic of one window); output order is the input order. Behind a NAT, or with every
  client on one address (a balancer log without X-Forwarded-For), two sessions starting
  at once can be mixed up; `window=0` turns linking off.
- `number_sessions`: `seq`, each request's position in its session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from harness.trace.format import TraceRecord


def link_first_requests(records: Iterable[TraceRecord], window: float = 30.0
                        ) -> Iterator[TraceRecord]:
    if window <= 0:
        yield from records
        return
    held: deque[TraceRecord] = deque()
    waiting: dict[str | None, list[TraceRecord]] = {}  # client -> its ip-keyed requests
    waiting_ids: set[int] = set()
    seen: set[str] = set()

    def release(client: str | None) -> None:
        for record in waiting.pop(client, []):
            waiting_ids.discard(id(record))

    for record in records:
        if record.session.startswith("cookie:"):
            new = record.session not in seen
            seen.add(record.session)
            if new and waiting.get(record.client_ip):
                waiting[record.client_ip][-1].session = record.session
            release(record.client_ip)
        elif record.session.startswith("ip:"):
            waiting.setdefault(record.client_ip, []).append(record)
            waiting_ids.add(id(record))
        held.append(record)
        while held and (id(held[0]) not in waiting_ids or held[0].t + window < record.t):
            head = held.popleft()
            if id(head) in waiting_ids:
                release(head.client_ip)  # waited long enough: stays on the client-IP key
            yield head
    yield from held


def number_sessions(records: Iterable[TraceRecord]) -> Iterator[TraceRecord]:
    counts: dict[str, int] = {}
    for record in records:
        record.seq = counts.get(record.session, 0)
        counts[record.session] = record.seq + 1
        yield record
