"""The scripted driver: runs session plans step by step, each user with its own cookie jar,
and writes one History record per request.

Sessions run concurrently on a small thread pool (requests within a session stay in order),
so connection limits and pooling can show; the plans themselves are seeded data.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from harness.history import RequestRecord
from harness.proxy import proxy_protocol
from harness.runtime.net import ensure_loopback
from harness.traffic import identity
from harness.traffic.cookies import CookieJar
from harness.traffic.observe import observe
from harness.traffic.plans import PAUSE, SessionPlan


@dataclass
class SessionCarry:
    """What a user keeps between phases of one session (cookies, the cart they expect, the
    next request number), so a scenario can drive a session in phases around a fault."""

    jar: CookieJar = field(default_factory=CookieJar)
    cart_expected: int = 0
    cart_uncertain: int = 0  # failed POSTs since the cart was last seen (history.py)
    next_seq: int = 0


class ProxyProtocolConnection(http.client.HTTPConnection):
    """An HTTP connection that opens with a PROXY protocol header naming `client_ip`."""

    def __init__(self, host: str, port: int, *, client_ip: str, version: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.client_ip = client_ip
        self.version = version

    def connect(self) -> None:
        super().connect()
        source_port = self.sock.getsockname()[1]
        self.sock.sendall(proxy_protocol.encode(self.version, self.client_ip, self.host,
                                                source_port, self.port))


class ProxyProtocolTLSConnection(http.client.HTTPSConnection):
    """The same over TLS: the PROXY header goes first, in clear, then the TLS handshake."""

    def __init__(self, host: str, port: int, *, client_ip: str, version: int, timeout: float,
                 context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self.client_ip = client_ip
        self.version = version

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        source_port = self.sock.getsockname()[1]
        self.sock.sendall(proxy_protocol.encode(self.version, self.client_ip, self.host,
                                                source_port, self.port))
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def tls_context(ca: str | None = None) -> ssl.SSLContext:
    """For a TLS frontend: verification off (the harness speaks to a loopback address with
    the user's certificate), unless a CA file is given."""
    if ca:
        context = ssl.create_default_context(cafile=ca)
        context.check_hostname = False  # the certificate names the site, not 127.x.y.1
        return context
    return ssl._create_unverified_context()  # noqa: S323 - see the docstring


def connect(host: str, port: int, *, transport: str, wire_ip: str,
            timeout: float, tls: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """A connection on which the balancer will see `wire_ip` as the client, by `transport`
    (source: bind to it; proxy-protocol(-v2): a PROXY header; xff: the caller adds the
    X-Forwarded-For hop); over TLS when `tls` (a context) is given."""
    if transport in identity.PROXY_VERSIONS:
        version = identity.PROXY_VERSIONS[transport]
        if tls is not None:
            return ProxyProtocolTLSConnection(host, port, client_ip=wire_ip, version=version,
                                              timeout=timeout, context=tls)
        return ProxyProtocolConnection(host, port, client_ip=wire_ip, version=version,
                                       timeout=timeout)
    source = None if transport == "xff" else (ensure_loopback(wire_ip), 0)
    if tls is not None:
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=tls,
                                           source_address=source)
    return http.client.HTTPConnection(host, port, timeout=timeout, source_address=source)


class Driver:
    def __init__(self, url: str, *, scenario: str, check: str = "",
                 sink: Callable[[RequestRecord], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, t0: float | None = None,
                 timeout: float = 10.0, concurrency: int = 8, transport: str = "source",
                 tls_ca: str | None = None):
        parts = urlsplit(url)
        self.host = ensure_loopback(parts.hostname or "")
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = tls_context(tls_ca) if parts.scheme == "https" else None
        self.scenario = scenario
        self.check = check
        self.sink = sink
        self.clock = clock
        self.t0 = clock() if t0 is None else t0
        self.timeout = timeout
        self.concurrency = concurrency
        identity.on_wire("127.16.0.1", transport)  # rejects an unknown transport early
        self.transport = transport

    def run(self, plans: list[SessionPlan],
            carry: dict[str, SessionCarry] | None = None) -> list[RequestRecord]:
        """Run every plan; the records come back grouped by session, in plan order.

        With `carry`, each session continues from (and updates) its entry there."""
        carries = [carry.setdefault(p.session, self.fresh_carry(p)) if carry is not None
                   else None for p in plans]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency),
                                thread_name_prefix="stickler-driver") as pool:
            results = list(pool.map(self.run_session, plans, carries))
        return [record for session in results for record in session]

    @staticmethod
    def fresh_carry(plan: SessionPlan) -> SessionCarry:
        return SessionCarry(CookieJar(dict(plan.initial_cookies)), plan.cart_before)

    def run_session(self, plan: SessionPlan,
                    carry: SessionCarry | None = None) -> list[RequestRecord]:
        carry = carry or self.fresh_carry(plan)
        jar = carry.jar
        conn: http.client.HTTPConnection | None = None
        records = []
        cart_expected, uncertain = carry.cart_expected, carry.cart_uncertain
        try:
            seq = carry.next_seq - 1
            for step in plan.steps:
                if step.method == PAUSE:  # think time that matters (a TTL running out)
                    time.sleep(float(step.path))
                    continue
                seq += 1
                if conn is None or plan.connection == "new":
                    if conn:
                        conn.close()
                    conn = self._connect(plan.client_ip)
                record, conn = self._send(conn, plan, seq, step.method, step.path, jar,
                                          cart_expected)
                record.cart_uncertain = uncertain
                if record.cart_seen is not None:
                    # The user now sees this cart, whatever they expected.
                    cart_expected, uncertain = record.cart_seen, 0
                elif step.method == "POST" and step.path.startswith("/cart"):
                    uncertain += 1
                if not plan.keep_cookies:
                    jar.cookies.clear()
                records.append(record)
                if self.sink:
                    self.sink(record)
        finally:
            if conn:
                conn.close()
            carry.cart_expected, carry.next_seq = cart_expected, seq + 1
            carry.cart_uncertain = uncertain
        return records

    def _connect(self, client_ip: str) -> http.client.HTTPConnection:
        return connect(self.host, self.port, transport=self.transport, tls=self.tls,
                       wire_ip=identity.on_wire(client_ip, self.transport), timeout=self.timeout)

    def _send(self, conn: http.client.HTTPConnection, plan: SessionPlan, seq: int,
              method: str, path: str, jar: CookieJar,
              cart_before: int) -> tuple[RequestRecord, http.client.HTTPConnection]:
        headers = dict(plan.headers)
        wire_ip = identity.on_wire(plan.client_ip, self.transport)
        if self.transport == "xff":  # the client's hop, after any the plan itself carries
            prior = headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{prior}, {wire_ip}" if prior else wire_ip
        cookie = jar.header()
        if cookie:
            headers["Cookie"] = cookie
        if plan.connection == "new":
            headers["Connection"] = "close"
        expected = cart_before + (1 if method == "POST" else 0)
        record = RequestRecord(
            t=self.clock() - self.t0, duration=0.0, scenario=self.scenario, user=plan.user,
            session=plan.session, seq=seq, client_ip=wire_ip, transport=self.transport,
            connection=plan.connection, method=method, path=path,
            cookies_sent=dict(jar.cookies), headers_sent={k: v for k, v in plan.headers.items()},
            cart_expected=expected, check=self.check,
        )
        start = self.clock()
        for attempt in (1, 2):
            try:
                conn.request(method, path,
                             body=b"u" * plan.body_bytes if method == "POST" else None,
                             headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # A kept-alive connection the server closed: reconnect once, as browsers do.
                conn.close()
                conn = self._connect(plan.client_ip)
                if attempt == 2 or plan.connection == "new":
                    record.error = f"{type(exc).__name__}: {exc}"
                    record.duration = self.clock() - start
                    return record, conn
            except (OSError, http.client.HTTPException) as exc:
                record.error = f"{type(exc).__name__}: {exc}"
                record.duration = self.clock() - start
                conn.close()
                return record, self._connect(plan.client_ip)
        record.duration = self.clock() - start
        observe(record, resp.status, resp.getheader, resp.msg.get_all("Set-Cookie") or [],
                body)
        jar.update(record.set_cookies)
        if resp.getheader("Connection", "").lower() == "close" and plan.connection != "new":
            conn.close()
            conn = self._connect(plan.client_ip)
        return record, conn
