"""The reference proxy's recording mode: every request it passes on becomes a trace record.

`stickler record` puts the proxy between clients and a balancer (one upstream, no routing
of its own, fly-replay answers passed through untouched) and writes what went by as a
trace when it stops: sessions keyed and numbered as the importers do, secrets redacted
unless asked not to (harness/trace/redact.py). Records are kept in memory until then, so
a recording is as long as memory allows; the file is written whole or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.proxy.http1 import IncomingRequest, Reply
from harness.trace.format import TraceHeader, TraceRecord
from harness.trace.importers.base import body_fields
from harness.trace.io import TraceWriter
from harness.trace.redact import RedactionPolicy, redact
from harness.trace.session_key import SessionKeyRule
from harness.trace.sessions import link_first_requests, number_sessions

DEFAULT_POLICY = RedactionPolicy()
AUTO_KEY = SessionKeyRule("auto")
NOT_RECORDED = {"cookie", "host", "content-length", "connection", "keep-alive",
                "transfer-encoding"}


class Recorder:
    def __init__(self, path: str | Path, *, policy: RedactionPolicy | None = DEFAULT_POLICY,
                 session_key: SessionKeyRule = AUTO_KEY,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.policy = policy
        self.session_key = session_key
        self.clock = clock
        self.start = clock()
        self.records: list[TraceRecord] = []

    def add(self, request: IncomingRequest, reply: Reply, client_ip: str,
            upstream: str) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()
                   if k.lower() not in NOT_RECORDED}
        cookies = request.cookies
        set_cookies = reply.headers.getall("Set-Cookie", [])
        self.records.append(TraceRecord(
            t=round(self.clock() - self.start, 6),
            session=self.session_key.key(cookies=cookies, headers=headers,
                                         client_ip=client_ip, set_cookies=set_cookies),
            method=request.method, path=request.target, client_ip=client_ip,
            host=request.host or None, headers_sent=headers, cookies_sent=cookies,
            status=reply.status, replica=reply.headers.get("X-Replica") or upstream,
            set_cookies=list(set_cookies), **body_fields(request.body)))

    def commit(self) -> int:
        """Write the trace (atomically); the number of records written."""
        header = TraceHeader(start=self.start, source={"format": "stickler-record"},
                             redacted=self.policy is not None,
                             session_key=str(self.session_key))
        with TraceWriter(self.path, header) as writer:
            for record in number_sessions(link_first_requests(self.records)):
                writer.write(redact(record, self.policy) if self.policy else record)
        return len(self.records)
