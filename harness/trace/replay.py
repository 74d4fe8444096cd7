"""Replays a trace against a cluster (the I/O shell around schedule.ReplaySchedule).

Each recorded session gets its own cookie jar that starts empty and learns cookies live:
the replicas differ from the recording, so recorded cookie values are not replayed
verbatim. Whether a request carries cookies follows the recording where it knows: a
request recorded with cookies sends every cookie its session learned (the candidate
balancer's own cookie included, whatever the recorded one was called), one recorded
without (a client that drops them) sends none; a trace that records no cookies at all
sends the learned ones on every request. Recorded client addresses are mapped onto the
identity transports (see ClientMap), request by request: a phone that changed address in
the recording changes it in the replay (on a new connection). Requests go out on an open
model at `t / speed`, at most `concurrency` at a time, a session's requests in order on
its own kept-alive connection; every request becomes a History record, and the lag behind
the schedule is measured.
"""

from __future__ import annotations

import http.client
import ipaddress
import math
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from harness.history import RequestRecord
from harness.runtime.net import ensure_loopback
from harness.trace.format import TraceRecord
from harness.trace.schedule import Dispatch, ReplaySchedule
from harness.traffic import identity
from harness.traffic.cookies import CookieJar
from harness.traffic.observe import observe
from harness.traffic.scripted import connect, tls_context

# Never replayed as recorded: the transport's own headers, and the cookies (the jar's).
NOT_REPLAYED = {"connection", "keep-alive", "proxy-connection", "content-length",
                "transfer-encoding", "te", "upgrade", "host", "cookie", "expect", "trailer"}


class ClientMap:
    """Recorded client addresses -> addresses on the wire. Addresses of one recorded /24
    stay in one /24 on the wire (what NGINX's ip_hash keys on), and keep their last octet."""

    def __init__(self, transport: str):
        identity.on_wire("127.16.0.1", transport)  # rejects an unknown transport
        self.transport = transport
        self.groups: dict[str, int] = {}

    def __call__(self, recorded: str | None, session: str) -> str:
        try:
            ip = ipaddress.ip_address(recorded or "")
        except ValueError:
            ip = None
        if (self.transport != "source" and ip is not None and not ip.is_loopback
                and not ip.is_unspecified):
            return str(ip)  # a label already: the PROXY header or XFF carries it as is
        if ip is not None and ip.version == 4:
            key, host = str(ipaddress.ip_network(f"{ip}/24", strict=False)), int(ip) & 0xFF
        else:  # IPv6 or no address: one client per address or per session
            key = str(ip) if ip is not None else f"session:{session}"
            host = zlib.crc32(key.encode())
        group = self.groups.setdefault(key, len(self.groups))
        if group >= identity.LABEL_GROUPS:
            raise ValueError(f"the trace has more than {identity.LABEL_GROUPS} client /24s")
        loopback = identity.client_address(group, 1 + (host - 1) % 254 if host else 1)
        return identity.on_wire(loopback, self.transport)


@dataclass
class _Session:
    jar: CookieJar = field(default_factory=lambda: CookieJar({}))
    conn: http.client.HTTPConnection | None = None
    conn_ip: str = ""  # the client address the connection carries


@dataclass
class ReplayResult:
    records: list[RequestRecord]
    lags: list[float]  # seconds each request went out after its scheduled time
    duration: float
    speed: float
    concurrency: int
    transport: str
    clients: int


class Replayer:
    def __init__(self, url: str, *, speed: float = 1.0, concurrency: int = 32,
                 transport: str = "source", timeout: float = 10.0,
                 sink: Callable[[RequestRecord], None] | None = None,
                 progress: Callable[[int, int, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, tls_ca: str | None = None):
        parts = urlsplit(url)
        self.host = ensure_loopback(parts.hostname or "")
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = tls_context(tls_ca) if parts.scheme == "https" else None
        self.speed, self.concurrency, self.timeout = speed, concurrency, timeout
        self.transport = transport
        self.clients = ClientMap(transport)
        self.sink, self.progress, self.clock = sink, progress, clock

    def run(self, trace: Sequence[TraceRecord]) -> ReplayResult:
        schedule = ReplaySchedule(trace, start=0.0, speed=self.speed,
                                  max_in_flight=self.concurrency)
        sessions: dict[str, _Session] = {}
        clients: set[str] = set()
        self.recorded_cookies = any(r.cookies_sent for r in trace)
        records: list[RequestRecord] = []
        pending: dict[Future, Dispatch] = {}
        t0 = self.clock()
        pool = ThreadPoolExecutor(max_workers=self.concurrency,
                                  thread_name_prefix="stickler-replay")
        try:
            while not schedule.finished:
                now = self.clock() - t0
                for dispatch in schedule.due(now):
                    rec = dispatch.record
                    state = sessions.setdefault(rec.session, _Session())
                    ip = self.clients(rec.client_ip, rec.session)
                    clients.add(ip)
                    pending[pool.submit(self._send, rec, state, ip, now)] = dispatch
                wakeup = schedule.next_wakeup()
                wait_s = None if wakeup is None else max(0.0, wakeup - (self.clock() - t0))
                if not pending and wait_s is None:
                    break  # nothing in flight and nothing due: never spin
                done, _ = wait(pending, timeout=wait_s, return_when=FIRST_COMPLETED)
                for future in done:
                    dispatch = pending.pop(future)
                    schedule.completed(dispatch, self.clock() - t0)
                    record = future.result()
                    records.append(record)
                    if self.sink:
                        self.sink(record)
                    if self.progress:
                        self.progress(len(records), len(trace), dispatch.lag)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for state in sessions.values():
                if state.conn:
                    state.conn.close()
        return ReplayResult(records, schedule.lag.lags, self.clock() - t0, self.speed,
                            self.concurrency, self.transport, len(clients))

    def _send(self, rec: TraceRecord, state: _Session, wire_ip: str,
              t: float) -> RequestRecord:
        headers = {k: v for k, v in rec.headers_sent.items() if k.lower() not in NOT_REPLAYED}
        if self.transport == "xff":
            prior = next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), None)
            headers = {k: v for k, v in headers.items() if k.lower() != "x-forwarded-for"}
            headers["X-Forwarded-For"] = f"{prior}, {wire_ip}" if prior else wire_ip
        sent = dict(headers)
        sends_cookies = rec.cookies_sent or not self.recorded_cookies
        cookies = dict(state.jar.cookies) if sends_cookies else {}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        body = (rec.body.encode() if rec.body is not None
                else b"x" * rec.body_size if rec.body_size else None)
        record = RequestRecord(
            t=t, duration=0.0, scenario="replay", user=rec.session, session=rec.session,
            seq=rec.seq, client_ip=wire_ip, transport=self.transport, connection="keepalive",
            method=rec.method, path=rec.path, cookies_sent=dict(cookies),
            headers_sent=sent)
        start = self.clock()
        if state.conn is not None and state.conn_ip != wire_ip:
            state.conn.close()  # the client moved: a new connection from its new address
            state.conn = None
        for attempt in (1, 2):
            if state.conn is None:
                state.conn_ip = wire_ip
                state.conn = connect(self.host, self.port, transport=self.transport,
                                     tls=self.tls,
                                     wire_ip=wire_ip, timeout=self.timeout)
            try:
                state.conn.request(rec.method, rec.path, body=body, headers=headers)
                resp = state.conn.getresponse()
                payload = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                state.conn.close()
                state.conn = None
                # A kept-alive connection the server had closed: once more on a new one.
                stale = isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError |
                                   BrokenPipeError)
                if attempt == 2 or not stale:
                    record.error = f"{type(exc).__name__}: {exc}"
                    record.duration = self.clock() - start
                    return record
        record.duration = self.clock() - start
        observe(record, resp.status, resp.getheader, resp.msg.get_all("Set-Cookie") or [],
                payload)
        state.jar.update(record.set_cookies)
        if resp.getheader("Connection", "").lower() == "close":
            state.conn.close()
            state.conn = None
        return record


MIN_SPEED = 0.001


def parse_speed(text: str) -> float:
    """'1', '10', '0.5', '10x' or 'max' (as fast as possible)."""
    value = text.strip().lower()
    if value in ("max", "inf", "asap"):
        return math.inf
    value = value.removesuffix("x")
    try:
        speed = float(value)
    except ValueError:
        raise ValueError(f"speed must be a number like 1, 10 or 0.5, or max; got {text!r}") \
            from None
    if not speed >= MIN_SPEED or math.isinf(speed):
        raise ValueError(f"speed must be at least {MIN_SPEED:g} (a thousand times slower "
                         f"than recorded), or max; got {text!r}")
    return speed
