"""A lean HTTP/1.1 shell for the reference proxy: asyncio protocols with httptools (llhttp)
on both sides, clients and replicas.

Why not aiohttp: its server and client together cost about 330 us of CPU per proxied request
on these machines, which made the proxy the bottleneck of a load test (0.31 of HAProxy's
requests/s). Parsing with httptools and writing bytes directly does the same job for a
fraction of that; the proxy's decisions stay in routing.py and server.py.

Bodies are read whole (the proxy may have to replay a request, and the fixture app's bodies
are small); a request body over `max_body` is answered 413.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools
from multidict import CIMultiDict

from harness.proxy import proxy_protocol

log = logging.getLogger("stickler.proxy")
MAX_PIPELINE = 16  # requests queued on one connection before we stop reading it
REASONS = {s.value: s.phrase for s in HTTPStatus}


@dataclass
class IncomingRequest:
    method: str
    target: str  # path and query, as sent
    headers: CIMultiDict
    body: bytes
    peer: str  # the connection's address, or the PROXY protocol source
    keep_alive: bool = True

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def host(self) -> str:
        host = self.headers.get("Host", "")
        return host.rpartition(":")[0] if host.rfind(":") > host.rfind("]") else host

    @property
    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for line in self.headers.getall("Cookie", ()):
            for pair in line.split(";"):
                name, sep, value = pair.strip().partition("=")
                if sep and name:
                    jar.setdefault(name, value.strip('"'))
        return jar


@dataclass
class Reply:
    status: int
    headers: CIMultiDict = field(default_factory=CIMultiDict)
    body: bytes = b""


Handler = Callable[[IncomingRequest], Awaitable[Reply]]


def encode_reply(reply: Reply, keep_alive: bool, head: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Unknown')}\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in reply.headers.items()]
    lines.append(f"Content-Length: {len(reply.body)}\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    head_bytes = "".join(lines).encode("latin-1")
    return head_bytes if head else head_bytes + reply.body


def encode_request(method: str, target: str, authority: str, headers: dict[str, str],
                   body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + body


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order through `handler`."""

    def __init__(self, handler: Handler, *, proxy_protocol: bool = False,
                 max_body: int = 64 * 1024 * 1024):
        self.handler = handler
        self.expect_proxy = proxy_protocol
        self.max_body = max_body
        self.preamble = b""
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[IncomingRequest | Reply] = collections.deque()
        self.worker: asyncio.Task | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        if self.expect_proxy:
            self.preamble += data
            try:
                header = proxy_protocol.parse(self.preamble)
            except proxy_protocol.ProxyProtocolError as exc:
                log.warning("closing a connection from %s: %s", self.peer, exc)
                self.transport.close()
                return
            if header is None:
                return
            self.peer = header.source or self.peer
            data, self.preamble, self.expect_proxy = self.preamble[header.consumed:], b"", False
            if not data:
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._enqueue(Reply(400, body=f"stickler-proxy: bad request: {exc}\n".encode()))
            self.transport.pause_reading()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= self.max_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.size > self.max_body:
            self._enqueue(Reply(413, body=b"stickler-proxy: request body too large\n"))
        else:
            self._enqueue(IncomingRequest(
                self.parser.get_method().decode("ascii"), self.url.decode("latin-1"),
                CIMultiDict(self.headers), b"".join(self.body), self.peer,
                self.parser.should_keep_alive()))
        self._reset()

    def _enqueue(self, item: IncomingRequest | Reply) -> None:
        self.queue.append(item)
        if len(self.queue) >= MAX_PIPELINE:
            self.transport.pause_reading()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        while self.queue:
            item = self.queue.popleft()
            if isinstance(item, Reply):  # a parse error: answer it and hang up
                self.transport.write(encode_reply(item, keep_alive=False, head=False))
                self.transport.close()
                return
            try:
                reply = await self.handler(item)
            except Exception:
                log.exception("error while proxying %s %s", item.method, item.target)
                reply = Reply(500, body=b"stickler-proxy: internal error\n")
            if self.transport.is_closing():
                return
            self.transport.write(encode_reply(reply, item.keep_alive, item.method == "HEAD"))
            if not item.keep_alive:
                self.transport.close()
                return
            if len(self.queue) < MAX_PIPELINE:
                self.transport.resume_reading()
        self.worker = None


@dataclass
class Upstream:
    """A replica's answer, read whole."""

    status: int
    headers: CIMultiDict
    payload: bytes


class UpstreamConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.reusable = False
        self.received = False
        self.head = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("the replica closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad response from the replica: {exc}"))
            self.close()

    def on_message_begin(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.head:  # no body follows; llhttp cannot be told, so this connection is spent
            self._finish(reusable=False)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._finish(self.parser.should_keep_alive())

    def _finish(self, reusable: bool) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.reusable = reusable
            self.waiter.set_result(Upstream(self.parser.get_status_code(),
                                            CIMultiDict(self.headers), b"".join(self.body)))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, raw: bytes, timeout: float, head: bool) -> Upstream:
        loop = asyncio.get_running_loop()
        self.waiter, self.received, self.reusable, self.head = loop.create_future(), False, \
            False, head
        timer = loop.call_later(timeout, self._fail, TimeoutError(
            f"the replica did not answer within {timeout:g} s"))
        self.transport.write(raw)
        try:
            return await self.waiter
        finally:
            timer.cancel()
            self.waiter = None


class Pool:
    """Keep-alive connections to replicas, reused most recent first."""

    def __init__(self, connect_timeout: float = 2.0, timeout: float = 30.0, per_host: int = 256):
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.per_host = per_host
        self.idle: dict[tuple[str, int], list[UpstreamConnection]] = \
            collections.defaultdict(list)

    async def request(self, host: str, port: int, method: str, target: str,
                      headers: dict[str, str], body: bytes,
                      timeout: float | None = None) -> Upstream:
        raw = encode_request(method, target, f"{host}:{port}", headers, body)
        key = (host, port)
        for _ in range(2):
            conn, fresh = self._reuse(key), False
            if conn is None:
                conn, fresh = await self._connect(host, port), True
            try:
                answer = await conn.exchange(raw, timeout or self.timeout, method == "HEAD")
            except ConnectionResetError:
                conn.close()
                if fresh or conn.received:
                    raise
                continue  # a kept-alive connection the replica had closed: try a new one
            except BaseException:
                conn.close()  # a timeout or a cancel leaves the connection mid-message
                raise
            if conn.reusable and not conn.closed and len(self.idle[key]) < self.per_host:
                self.idle[key].append(conn)
            else:
                conn.close()
            return answer
        raise ConnectionResetError("the replica closed the connection")

    def _reuse(self, key: tuple[str, int]) -> UpstreamConnection | None:
        idle = self.idle[key]
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self, host: str, port: int) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(UpstreamConnection, host, port), self.connect_timeout)
        except TimeoutError:
            raise TimeoutError(f"connecting to {host}:{port} took over "
                               f"{self.connect_timeout:g} s") from None
        return conn

    def forget(self, host: str, port: int) -> None:
        """Drop idle connections to a replica (after it failed or left the config)."""
        for conn in self.idle.pop((host, port), []):
            conn.close()

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()
