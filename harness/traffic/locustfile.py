"""The load driver's Locust user: shoppers from a Profile's population (see load.py).

Environment (set by harness.traffic.load.run_load):
  STICKLER_POPULATION   JSON file: {"users": [UserSpec, ...]}
  STICKLER_HISTORY_DIR  where each process writes history-<pid>.jsonl
  STICKLER_T0           epoch seconds that record times count from
  STICKLER_WORKERS      Locust worker processes (default: --processes, or 1)
  STICKLER_TRANSPORT    how client addresses reach the balancer (traffic/identity.py)
  STICKLER_TLS_CA       a CA file to verify a TLS frontend against (default: no check)

Built on geventhttpclient (the client of Locust's FastHttpUser), driven directly: one
HTTPClient per user whose connection pool binds each new socket to the user's current source
address before connecting (SourcePool), no cookie handling of its own (our CookieJar decides
the Cookie header), no redirects, no proxies (geventhttpclient reads none from the
environment), and the request reported to Locust's request event here, with 4xx/5xx counted
as failures as HttpUser counts them. Going through FastHttpSession would add a URL parse, a
stdlib cookie jar and a response wrapper per request, and its status check releases a 4xx/5xx
response before its body is read; the History needs that body.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import time
from pathlib import Path
from random import Random
from typing import IO
from urllib.parse import urlsplit

import gevent.socket
import gevent.ssl
from geventhttpclient.client import HTTPClient
from geventhttpclient.connectionpool import ConnectionPool, SSLConnectionPool
from locust import User, events, task
from locust.exception import StopUser
from requests.exceptions import HTTPError

from harness.history import RequestRecord
from harness.proxy import proxy_protocol
from harness.runtime.net import ensure_loopback
from harness.traffic import identity
from harness.traffic.cookies import CookieJar
from harness.traffic.observe import observe
from harness.traffic.plans import ITEMS
from harness.traffic.profile import UserSpec, session_length

log = logging.getLogger("stickler.locust")
T0 = float(os.environ.get("STICKLER_T0") or time.time())
TRANSPORT = os.environ.get("STICKLER_TRANSPORT") or "source"
TLS_CA = os.environ.get("STICKLER_TLS_CA") or None  # verify a TLS frontend against it
TIMEOUT = 60.0  # s to connect, and between reads (FastHttpUser's defaults)
_user_numbers = itertools.count()  # per process; forked workers each start at 0
_population: list[UserSpec] = []
# harness.history.to_json's encoding, without asdict's deep copy: records hold no cycles.
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False).encode


def population() -> list[UserSpec]:
    if not _population:
        data = json.loads(Path(os.environ["STICKLER_POPULATION"]).read_text())
        _population.extend(UserSpec.from_dict(u) for u in data["users"])
    return _population


def loopback_host(url: str | None) -> bool:
    try:
        ensure_loopback(urlsplit(url or "").hostname or "")
    except ValueError:
        return False
    return True


class Recorder:
    """This process's history file; opened on first use (after Locust forked its workers)."""

    def __init__(self) -> None:
        self.file: IO[str] | None = None

    def write(self, record: RequestRecord) -> None:
        if self.file is None:
            folder = Path(os.environ["STICKLER_HISTORY_DIR"])
            folder.mkdir(parents=True, exist_ok=True)
            self.file = (folder / f"history-{os.getpid()}.jsonl").open(
                "a", encoding="utf-8", buffering=1 << 16)
        self.file.write(_encode(record.__dict__) + "\n")  # == to_json(record)

    def flush(self, **_: object) -> None:
        if self.file:
            self.file.flush()

    def close(self, **_: object) -> None:
        if self.file:
            self.file.close()
            self.file = None


recorder = Recorder()
events.test_stop.add_listener(recorder.flush)
events.quitting.add_listener(recorder.close)
atexit.register(recorder.close)


@events.init.add_listener
def refuse_other_hosts(environment, **_: object) -> None:
    if environment.host and not loopback_host(environment.host):
        log.error("refusing to send load to %s; only 127.0.0.0/8 is allowed", environment.host)
        raise SystemExit(2)


class _BindsSource:
    """A geventhttpclient connection pool whose sockets leave from `source_ip`, or, for the
    PROXY protocol transports, open with a header that names `wire_ip`."""

    source_ip: str
    wire_ip: str

    def _create_tcp_socket(self, family: int, socktype: int,
                           protocol: int) -> gevent.socket.socket:
        sock = super()._create_tcp_socket(family, socktype, protocol)  # type: ignore[misc]
        if TRANSPORT == "source":
            try:
                sock.bind((self.source_ip, 0))
            except BaseException:
                sock.close()
                raise
        return sock

    def after_connect(self, sock: gevent.socket.socket) -> None:
        if TRANSPORT in identity.PROXY_VERSIONS:
            host, port = sock.getpeername()[:2]
            sock.sendall(proxy_protocol.encode(identity.PROXY_VERSIONS[TRANSPORT], self.wire_ip,
                                               host, sock.getsockname()[1], port))


class SourcePool(_BindsSource, ConnectionPool):
    pass


class SourceSSLPool(_BindsSource, SSLConnectionPool):
    pass


def _unverified_context(cafile: str | None = None) -> gevent.ssl.SSLContext:
    """A user's TLS frontend is spoken to without checking its certificate (`insecure`
    alone only skips the host name check), unless a CA is given (STICKLER_TLS_CA): then the
    chain is checked (not the name: the harness connects to a loopback address)."""
    if TLS_CA:
        context = gevent.ssl.create_default_context(cafile=TLS_CA)
        context.check_hostname = False
        return context
    return gevent.ssl._create_unverified_context(cafile=cafile)


class SourceClient(HTTPClient):
    """One connection to `url`'s host, kept alive, bound to one source address."""

    def __init__(self, url: str, source_ip: str):
        split = urlsplit(url)
        ssl = split.scheme == "https"
        super().__init__(split.hostname or "", port=split.port, ssl=ssl, insecure=True,
                         ssl_context_factory=_unverified_context if ssl else None,
                         concurrency=1, connection_timeout=TIMEOUT, network_timeout=TIMEOUT)
        # HTTPClient builds its pool itself and takes no pool class; it has no socket yet,
        # so narrowing its class to the binding subclass changes only the socket factory.
        pool = self._connection_pool
        pool.__class__ = SourceSSLPool if ssl else SourcePool
        pool.source_ip = ensure_loopback(source_ip)  # type: ignore[attr-defined]
        pool.wire_ip = identity.on_wire(source_ip, TRANSPORT)  # type: ignore[attr-defined]
        self.source_ip = source_ip


def _status_error(status: int, reason: str | None, url: str) -> HTTPError | None:
    """What HttpUser (requests' raise_for_status) counts as a failure, with its message."""
    if 400 <= status < 500:
        return HTTPError(f"{status} Client Error: {reason} for url: {url}")
    if 500 <= status < 600:
        return HTTPError(f"{status} Server Error: {reason} for url: {url}")
    return None


_started: list[float] = []


def _mark_started() -> None:
    """The first user of this process is starting: say when, for the fault schedule, which
    counts from here (Locust's own start-up takes seconds on a loaded machine)."""
    folder = os.environ.get("STICKLER_HISTORY_DIR")
    if _started or not folder:
        return
    _started.append(time.time())
    marker = Path(folder) / f"started-{os.getpid()}"
    marker.write_text(repr(_started[0]))


class Shopper(User):
    """Sessions of POST /cart (add), GET /cart (browse) and a final POST /checkout."""

    http: SourceClient | None = None

    def on_start(self) -> None:
        if not loopback_host(self.host):
            log.error("refusing to send load to %s; only 127.0.0.0/8 is allowed", self.host)
            raise StopUser()
        _mark_started()
        specs = population()
        runner = self.environment.runner
        workers = int(os.environ.get("STICKLER_WORKERS")
                      or getattr(self.environment.parsed_options, "processes", None) or 1)
        number = max(getattr(runner, "worker_index", 0), 0) + workers * next(_user_numbers)
        self.spec = specs[number % len(specs)]
        lap = number // len(specs)  # more Locust users than specs: a spec's second user
        self.user_id = self.spec.id if lap == 0 else f"{self.spec.id}.{lap}"
        self.rng = Random(f"{self.spec.seed}:{lap}")
        base = (self.host or "").rstrip("/")
        self.prefix = urlsplit(base).path  # a path in --host comes before every request's
        self.base = base[:len(base) - len(self.prefix)] if self.prefix else base
        self.report = self.environment.events.request.fire
        self.address = ""
        self.sent = 0
        self.sessions = 0
        self.left = 0  # requests left in the current session
        self._use_address(self.spec.addresses[0])

    def on_stop(self) -> None:
        if self.http:
            self.http.close()

    def wait_time(self) -> float:
        low, high = self.spec.think_ms
        return self.rng.uniform(low, high) / 1000

    def _use_address(self, ip: str) -> None:
        """A fresh client (and pool): the kept-alive connection from the old address closes."""
        if self.http:
            self.http.close()
        self.http = SourceClient(self.host or "", ip)
        self.address = ip

    def _new_session(self) -> None:
        self.session = f"{self.user_id}-s{self.sessions}"
        self.sessions += 1
        self.left = session_length(self.rng, self.spec)
        self.seq = 0
        self.cart = 0
        self.cart_uncertain = 0  # failed POSTs since the cart was last seen
        self.jar = CookieJar()

    def _next_step(self) -> tuple[str, str]:
        if self.seq > 0 and self.left == 1:
            return "POST", "/checkout"
        if self.seq == 0 or self.rng.random() < 0.5:
            return "POST", f"/cart?item={self.rng.choice(ITEMS)}"
        return "GET", "/cart"

    @task
    def shop(self) -> None:
        if self.left <= 0:
            self._new_session()
        spec = self.spec
        if spec.switch_every:
            ip = spec.addresses[(self.sent // spec.switch_every) % len(spec.addresses)]
            if ip != self.address:
                self._use_address(ip)
        method, path = self._next_step()
        sent_headers = {"X-Forwarded-For": spec.xff} if spec.xff else {}
        wire_ip = identity.on_wire(self.address, TRANSPORT)
        if TRANSPORT == "xff":  # the client's own hop, after a CDN edge's
            sent_headers["X-Forwarded-For"] = (f"{spec.xff}, {wire_ip}" if spec.xff
                                               else wire_ip)
        headers = dict(sent_headers)
        if cookie := self.jar.header():
            headers["Cookie"] = cookie
        expected = 0 if path == "/checkout" else self.cart + (1 if method == "POST" else 0)
        record = RequestRecord(
            t=time.time() - T0, duration=0.0, scenario="load", user=self.user_id,
            session=self.session, seq=self.seq, client_ip=wire_ip, transport=TRANSPORT,
            connection="keepalive", method=method, path=path,
            cookies_sent=dict(self.jar.cookies), headers_sent=sent_headers,
            cart_expected=expected, cart_uncertain=self.cart_uncertain)
        self.sent += 1
        self.seq += 1
        self.left -= 1
        url = self.base + self.prefix + path
        start_time = time.time()
        start = time.perf_counter()
        resp = None
        body = b""
        try:
            resp = self.http.request(method, self.prefix + path, headers=headers)
            body = resp.read()  # the whole body; the connection goes back to the pool
            failure = _status_error(resp.status_code, resp.status_message, url)
        except Exception as exc:  # noqa: BLE001 - any failure to talk HTTP is the record's
            # (A request cut off by Locust's stop raises GreenletExit and leaves no record.)
            failure = exc
            record.error = _describe(exc)
        finally:
            if resp is not None:
                resp.release()
        record.duration = time.perf_counter() - start
        self.report(request_type=method, name=path.split("?")[0],
                    response_time=record.duration * 1000, response_length=len(body),
                    response=resp, context=self.context(), exception=failure,
                    start_time=start_time, url=url)
        if record.error is None:
            fields = resp.info()

            def header(name: str) -> str | None:  # repeated fields joined, as requests does
                values = fields.getlist(name)
                return ", ".join(values) if values else None

            observe(record, resp.status_code, header, fields.getlist("Set-Cookie"), body)
            self.jar.update(record.set_cookies)
            if record.cart_seen is not None:
                self.cart = record.cart_seen  # the user now sees this cart
                self.cart_uncertain = 0
        if record.cart_seen is None and method == "POST" and path.startswith("/cart"):
            self.cart_uncertain += 1
        if not spec.keep_cookies:
            self.jar.cookies.clear()
        recorder.write(record)


def _describe(exc: BaseException) -> str:
    """The innermost cause, e.g. `ConnectionRefusedError: [Errno 111] ...`."""
    for _ in range(10):
        if exc.__context__ is None:
            break
        exc = exc.__context__
    return f"{type(exc).__name__}: {exc}"
