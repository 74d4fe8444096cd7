"""Which replayed sessions broke, and at which request (pure: History records in).

A session breaks at its first request that
- failed (`error`: a transport error, or a 5xx answer),
- reached the app with its state gone (`state-lost`: the app did not know the session's
  cookie, so the cart was on another replica),
- or was served by another replica than the request before (`split`).
The first of these is the one reported; later ones follow from it. A session that never
sent a cookie (a client that drops them) is marked `cookieless`: under cookie affinity it
splits by chance, so comparisons count it apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from harness.analysis.metrics import group
from harness.history import RequestRecord


@dataclass(frozen=True)
class Broken:
    session: str
    seq: int  # the request (position in the session, from 0) where it broke
    kind: str  # error, state-lost, split
    detail: str
    client_ip: str
    requests: int  # requests of the session
    cookieless: bool = False  # the session never sent a cookie

    def to_dict(self) -> dict:
        return asdict(self)


def _first_break(records: list[RequestRecord]) -> tuple[float, Broken] | None:
    previous: str | None = None
    cookieless = not any(r.cookies_sent for r in records)
    for r in records:
        def broken(kind: str, detail: str, r: RequestRecord = r) -> tuple[float, Broken]:
            return r.t, Broken(r.session, r.seq, kind, detail, r.client_ip, len(records),
                               cookieless)

        if r.error or (r.status or 0) >= 500:
            return broken("error", r.error or f"status {r.status}")
        if r.state == "lost":
            return broken("state-lost", f"{r.method} {r.path} on {r.replica}: the app did not "
                          f"know the session (it was served by {previous or 'nobody'} before)")
        if previous is not None and r.replica and r.replica != previous:
            return broken("split", f"{r.method} {r.path}: {previous} -> {r.replica}")
        previous = r.replica or previous
    return None


def broken_sessions(records: Iterable[RequestRecord]) -> list[Broken]:
    """Every broken session, in order of the time it broke."""
    by_session = group(r for r in records if isinstance(r, RequestRecord))
    found = [b for rs in by_session.values() if (b := _first_break(rs)) is not None]
    return [b for _, b in sorted(found, key=lambda tb: (tb[0], tb[1].session))]


def replay_summary(records: list[RequestRecord], broken: list[Broken]) -> dict[str, float]:
    """Counts for a report: sessions, how many broke and how, the load spread."""
    sessions = group(records)
    served = Counter(r.replica for r in records if r.replica and not r.error)
    total = sum(served.values())
    kinds = Counter(b.kind for b in broken)
    return {
        "requests": len(records),
        "sessions": len(sessions),
        "broken_sessions": len(broken),
        "split_sessions": kinds["split"],
        "state_lost_sessions": kinds["state-lost"],
        "error_sessions": kinds["error"],
        "errors": sum(1 for r in records if r.error or (r.status or 0) >= 500),
        "replicas_used": len(served),
        "max_load_share": max(served.values()) / total if total else 0.0,
    }
