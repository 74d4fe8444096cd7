"""The History: what happened in a run, one JSON object per line.

Two record types share the file, told apart by `type`:
- `request`: one per HTTP request a driver sent (see `RequestRecord`).
- `fault`: one per fault the nemesis or a suite injected (see `FaultRecord`).
The schema is documented in docs/history.md; keep the two in step.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError

SCHEMA_VERSION = 1


@dataclass
class RequestRecord:
    t: float  # seconds since the run's start, when the request was sent
    duration: float  # seconds until the response was read (or the error happened)
    scenario: str
    user: str
    session: str
    seq: int  # position of the request in its session, from 0
    client_ip: str
    transport: str  # how client_ip reached the balancer: source, proxy-protocol, xff
    connection: str  # "new" (a connection per request) or "keepalive"
    method: str
    path: str
    status: int | None = None
    replica: str | None = None  # from the X-Replica header
    cookies_sent: dict[str, str] = field(default_factory=dict)
    headers_sent: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)  # raw Set-Cookie header values
    response_headers: dict[str, str] = field(default_factory=dict)  # selected, lower-case
    state: str | None = None  # app's view: new, found, lost
    cart_expected: int | None = None  # items the client believes are in its cart
    cart_seen: int | None = None  # items the app returned
    # POSTs to the cart since the client last saw it whose outcome it could not see (an
    # error, or a 5xx from the balancer): each may have been applied before the failure.
    cart_uncertain: int = 0
    app_cookies_seen: dict[str, str] = field(default_factory=dict)
    # The client address the balancer reported to the app (last X-Forwarded-For hop).
    app_saw_client: str | None = None
    error: str | None = None
    check: str = ""  # the conformance check that sent it, if any
    type: str = "request"


@dataclass
class FaultRecord:
    t: float  # when the fault was complete (for add/remove: the reload had taken effect)
    op: str  # kill, pause, resume, restart, add, remove
    target: str
    detail: str = ""
    began: float | None = None  # when the operation started, if it took time
    type: str = "fault"


Record = RequestRecord | FaultRecord


def to_json(record: Record) -> str:
    return json.dumps(asdict(record), sort_keys=True, separators=(",", ":"))


def from_dict(data: dict[str, Any]) -> Record:
    kind = data.get("type")
    cls = {"request": RequestRecord, "fault": FaultRecord}.get(kind)
    if cls is None:
        raise ValueError(f"unknown record type {kind!r}; expected request or fault")
    known = set(cls.__dataclass_fields__)
    return cls(**{k: v for k, v in data.items() if k in known})


class HistoryWriter:
    """Appends records to a JSONL file; safe to call from several driver threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: Record) -> None:
        line = to_json(record) + "\n"
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_history(path: str | Path) -> Iterator[Record]:
    """Records of a JSONL history; a bad line is an error naming the file and line."""
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield from_dict(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise InputError(f"not a history record: {exc}", file=str(path),
                                 line=number) from None


def requests_of(records: Iterable[Record]) -> list[RequestRecord]:
    return [r for r in records if isinstance(r, RequestRecord)]
