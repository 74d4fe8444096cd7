"""A trace's summary, after validating every line against the schema (streaming: memory
grows with the number of sessions and clients, not requests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.trace.io import read_trace


def summarize(path: str | Path) -> dict[str, Any]:
    sessions: set[str] = set()
    clients: set[str | None] = set()
    replicas: set[str] = set()
    count = out_of_order = 0
    first = last = previous = None
    seqs: dict[str, set[int]] = {}
    with read_trace(path, validate=True) as reader:
        for record in reader:
            count += 1
            seen = seqs.setdefault(record.session, set())
            if record.seq in seen:
                raise InputError(f"session {record.session}: request seq {record.seq} "
                                 f"appears twice (each request of a session has its own "
                                 f"seq)", file=str(path), line=reader.line)
            seen.add(record.seq)
            sessions.add(record.session)
            clients.add(record.client_ip)
            if record.replica:
                replicas.add(record.replica)
            first = record.t if first is None else min(first, record.t)
            last = record.t if last is None else max(last, record.t)
            if previous is not None and record.t < previous:
                out_of_order += 1
            previous = record.t
        header = reader.header
    return {"version": header.version, "redacted": header.redacted,
            "source": " ".join(str(header.source[k]) for k in ("format", "file")
                               if k in header.source),
            "requests": count, "sessions": len(sessions), "clients": len(clients - {None}),
            "replicas": len(replicas), "first_t": first or 0.0, "last_t": last or 0.0,
            "span_s": (last - first) if count else 0.0, "out_of_order": out_of_order}
