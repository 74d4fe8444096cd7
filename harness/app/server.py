"""The fixture app's HTTP shell: one process per replica, on the reference proxy's lean
HTTP/1.1 layer (asyncio and httptools, harness.proxy.http1).

    python -m harness.app --id r1 --host 127.0.0.1 --port 8081

Every response carries `X-Replica` and a JSON body naming the replica, the session state
(new, found or lost), the cart, and the cookies and client-address headers the app received.

Why not aiohttp: a replica starts for every cluster of a conformance run (hundreds of times),
and aiohttp's import alone cost about 0.24 s of CPU per start and about three times the
CPU per request; on two cores that was most of what a concurrent run could not overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from urllib.parse import parse_qsl

from multidict import CIMultiDict

from harness.app import HEALTH_CHECKS_PATH
from harness.app.replay import MODES, PIN_COOKIE, replay_target
from harness.app.sessions import SessionStore, StoreUnavailable
from harness.proxy.http1 import ClientConnection, IncomingRequest, Reply

AFFINITY_PLACEHOLDER = "app"
Handler = Callable[["Request"], Awaitable[Reply]]


class Request:
    """An IncomingRequest with what the handlers ask of it, parsed once."""

    def __init__(self, incoming: IncomingRequest):
        self.incoming = incoming
        self.method = incoming.method
        self.path_qs = incoming.target
        self.path, _, query = incoming.target.partition("?")
        self.query = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
        self.headers = incoming.headers
        self.cookies = incoming.cookies
        self.remote = incoming.peer

    def text(self) -> str:
        return self.incoming.body.decode("utf-8", "replace")


def reply(status: int = 200, text: str = "", headers: dict[str, str] | None = None,
          body: dict | None = None) -> Reply:
    out = CIMultiDict()
    out["Date"] = _date()
    if body is not None:
        out["Content-Type"] = "application/json; charset=utf-8"
        data = json.dumps(body).encode()
    else:
        out["Content-Type"] = "text/plain; charset=utf-8"
        data = text.encode()
    for k, v in (headers or {}).items():
        out[k] = v
    return Reply(status, out, data)


def set_cookie(r: Reply, name: str, value: str, *, httponly: bool = False,
               max_age: int | None = None) -> None:
    r.headers.add("Set-Cookie", f"{name}={value}"
                  + ("; HttpOnly" if httponly else "")
                  + (f"; Max-Age={max_age}" if max_age is not None else "") + "; Path=/")


_date_cache = [0, ""]


def _date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return _date_cache[1]


class App:
    """The shop: routes and the blueprint's fly-replay middleware over a session store."""

    def __init__(self, replica_id: str, session_cookie: str = "sid",
                 affinity_cookie: str | None = None, region: str | None = None,
                 replay_mode: str = "", peers: tuple[str, ...] = (), leader: str | None = None,
                 replay_cache_ttl: int = 0, replay_options: str = "",
                 session_store: str = "memory", health_path: str = "/healthz"):
        self.replica_id = replica_id
        # Where the balancer's active checks ask (a user's config may name its own path).
        self.health_path = health_path
        self.session_cookie = session_cookie
        self.affinity_cookie = affinity_cookie
        self.region = region
        self.replay_mode = replay_mode
        self.peers = peers
        self.leader = leader
        self.replay_cache_ttl = replay_cache_ttl
        self.replay_options = replay_options
        self.store = make_store(session_store)
        self.requests = 0
        self.replays_issued = 0
        self.health_checks = 0  # GET/HEAD /healthz so far: the balancer's active checks

    async def handle(self, incoming: IncomingRequest) -> Reply:
        request = Request(incoming)
        if request.path == HEALTH_CHECKS_PATH:
            # For the harness, straight to the replica: when the balancer last checked it.
            return reply(body={"replica": self.replica_id, "health_checks": self.health_checks})
        try:
            if self.replay_mode:
                return await self.fly_replay(request)
            return await self.route(request)
        except StoreUnavailable as exc:
            return reply(503, body={"replica": self.replica_id, "error": str(exc)},
                         headers={"X-Replica": self.replica_id})

    def is_health_check(self, path: str, method: str) -> bool:
        """GET or HEAD /healthz, or the config's own check path (at `/`, only HAProxy's
        default check, OPTIONS /: GET / is the shop's front page)."""
        if path == "/healthz":
            return method in ("GET", "HEAD")
        return path == self.health_path and (method == "OPTIONS" or path != "/")

    async def route(self, request: Request) -> Reply:
        path, method = request.path, request.method
        if self.is_health_check(path, method):
            self.health_checks += 1
            return reply(text="ok\n", headers={"X-Replica": self.replica_id})
        if path == "/cart":
            return await self.cart(request)
        if path == "/checkout" and method == "POST":
            return await self.checkout(request)
        if path == "/" and method in ("GET", "HEAD"):
            return self.respond(request, {"sessions": await self.store.count(),
                                          "requests": self.requests,
                                          "replays_issued": self.replays_issued})
        return await self.page(request)

    async def fly_replay(self, request: Request) -> Reply:
        """The blueprint's middleware: answer with fly-replay when another replica owns it."""
        rid = self.replica_id
        if self.is_health_check(request.path, request.method) or \
                "fly-replay-failed" in request.headers:
            return await self.route(request)
        if self.replay_mode == "always":
            if "fly-replay-src" in request.headers:
                return await self.route(request)
            self.replays_issued += 1
            return reply(307, "replay\n", {"fly-replay": self.replay_options, "X-Replica": rid})
        move_to = request.query.get("move_to")
        if move_to and move_to != rid and self.replay_mode == "pin-cookie":
            # The blueprint's app moving a session: replay to the new home and tell the proxy
            # to forget the cached decision for it.
            self.replays_issued += 1
            # `state` makes this replay uncacheable, so only the invalidation decides what
            # the proxy remembers afterwards.
            return reply(307, f"moving to {move_to}\n", {
                "fly-replay": f"instance={move_to};state=moved",
                "fly-replay-cache": "invalidate", "X-Replica": rid})
        target = None if move_to == rid else replay_target(
            self.replay_mode, rid, request.method, request.cookies, self.session_cookie,
            self.peers, self.leader)
        if target is None:
            resp = await self.route(request)
            if self.replay_mode == "pin-cookie":
                set_cookie(resp, PIN_COOKIE, rid, max_age=6 * 24 * 3600)
            return resp
        self.replays_issued += 1
        resp = reply(307, f"replay to {target}\n", {
            "fly-replay": ";".join(filter(None, [f"instance={target}", self.replay_options])),
            "X-Replica": rid})
        if self.replay_cache_ttl:
            resp.headers["fly-replay-cache"] = request.path
            resp.headers["fly-replay-cache-ttl-secs"] = str(self.replay_cache_ttl)
        return resp

    def respond(self, request: Request, body: dict, status: int = 200) -> Reply:
        self.requests += 1
        body = {
            "replica": self.replica_id,
            "region": self.region,
            "pid": os.getpid(),
            "path": request.path_qs,
            "cookies_seen": dict(request.cookies),
            "peer": request.remote,
            # Every X-Forwarded-For line, joined: the last hop is what the balancer itself saw
            # (HAProxy's forwardfor adds its own header line, NGINX appends to the value).
            "x_forwarded_for": ", ".join(request.headers.getall("X-Forwarded-For", []))
            or None,
            **body,
        }
        headers = {"X-Replica": self.replica_id}
        # What the proxy told this replica about replays, for the harness to record.
        for name in ("fly-replay-src", "fly-replay-cache-status", "fly-replay-failed",
                     "fly-preferred-instance-unavailable"):
            if name in request.headers:
                headers[f"X-Seen-{name}"] = request.headers[name]
        return reply(status, body=body, headers=headers)

    def _new_session_cookie(self, resp: Reply, found) -> None:
        if found.state == "new":
            set_cookie(resp, self.session_cookie, found.session, httponly=True)

    async def cart(self, request: Request) -> Reply:
        delay = request.query.get("delay_ms")
        if delay and delay.isdigit():
            await asyncio.sleep(min(int(delay), 10_000) / 1000)
        found = await self.store.lookup(request.cookies.get(self.session_cookie))
        if request.method == "POST":
            item = request.query.get("item") or request.text().strip() or "item"
            found.cart.append(item[:64])
            await self.store.save(found)
        resp = self.respond(request, {"session": found.session, "state": found.state,
                                      "cart": list(found.cart)})
        if request.method == "GET" and request.query.get("cacheable"):
            # Freshness information makes the response cacheable in HTTP's (and HAProxy's) eyes.
            resp.headers["Cache-Control"] = "max-age=60"
        self._new_session_cookie(resp, found)
        if self.affinity_cookie and self.affinity_cookie not in request.cookies:
            set_cookie(resp, self.affinity_cookie, AFFINITY_PLACEHOLDER)
        return resp

    async def checkout(self, request: Request) -> Reply:
        """Place the order: the cart empties. An order from a lost session is an empty one."""
        found = await self.store.lookup(request.cookies.get(self.session_cookie))
        ordered = list(found.cart)
        found.cart.clear()
        await self.store.save(found)
        resp = self.respond(request, {"session": found.session, "state": found.state,
                                      "cart": [], "ordered": ordered})
        self._new_session_cookie(resp, found)
        return resp

    async def page(self, request: Request) -> Reply:
        """Any other path is a page of the shop, seen within the session: replayed traces
        (a browser's HAR, a production log) ask for paths of their own."""
        found = await self.store.lookup(request.cookies.get(self.session_cookie))
        resp = self.respond(request, {"session": found.session, "state": found.state,
                                      "cart": list(found.cart)})
        self._new_session_cookie(resp, found)
        return resp


def make_app(replica_id: str, **options) -> App:
    return App(replica_id, **options)


async def start_server(app: App, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: ClientConnection(app.handle), host, port,
                                    reuse_address=True)


def make_store(spec: str):
    """`memory` (this replica's own) or `redis://host:port[/db]` (shared by all replicas)."""
    if spec == "memory":
        return SessionStore()
    from harness.app.redis_store import RedisSessionStore

    return RedisSessionStore(spec)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)  # unwind so the log is flushed


async def _serve(app: App, host: str, port: int, replica_id: str) -> None:
    server = await start_server(app, host, port)
    print(json.dumps({"replica": replica_id, "listening": f"{host}:{port}"}), flush=True)
    try:
        async with server:
            await server.serve_forever()
    finally:
        await app.store.close()


def main(argv: list[str] | None = None) -> None:
    from harness.runtime.net import ensure_cluster_host

    parser = argparse.ArgumentParser(prog="python -m harness.app", description=__doc__)
    parser.add_argument("--id", required=True, help="replica id, e.g. r1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--session-cookie", default="sid")
    parser.add_argument("--affinity-cookie", default=None)
    parser.add_argument("--region", default=None)
    parser.add_argument("--replay-mode", default="", choices=MODES,
                        help="answer with fly-replay like the blueprint (pin-cookie, hash, leader)")
    parser.add_argument("--peers", default="", help="comma-separated replica ids (hash mode)")
    parser.add_argument("--leader", default=None, help="the replica that takes writes")
    parser.add_argument("--replay-cache-ttl", type=int, default=0,
                        help="ask the proxy to cache replays of this path for N seconds")
    parser.add_argument("--replay-options", default="",
                        help="more fly-replay fields, e.g. timeout=500ms;fallback=prefer_self")
    parser.add_argument("--session-store", default="memory", metavar="memory|redis://HOST:PORT",
                        help="where sessions live: this replica's memory (default) or a "
                             "Redis shared by all replicas")
    parser.add_argument("--health-path", default="/healthz",
                        help="answer and count the balancer's health checks here too")
    args = parser.parse_args(argv)
    try:
        ensure_cluster_host(args.host)
    except ValueError:
        parser.error("--host must be a loopback address (127.0.0.0/8), or inside a Stickler "
                     "container a private one")
    if args.session_store != "memory":
        from harness.app.redis_store import parse_url

        try:
            ensure_cluster_host(parse_url(args.session_store)[0])
        except ValueError as exc:
            parser.error(f"--session-store: {exc}")
    app = make_app(args.id, session_cookie=args.session_cookie,
                   affinity_cookie=args.affinity_cookie, region=args.region,
                   replay_mode=args.replay_mode,
                   peers=tuple(p for p in args.peers.split(",") if p), leader=args.leader,
                   replay_cache_ttl=args.replay_cache_ttl, replay_options=args.replay_options,
                   session_store=args.session_store, health_path=args.health_path)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with contextlib.suppress(SystemExit, KeyboardInterrupt):
        asyncio.run(_serve(app, args.host, args.port, args.id))


if __name__ == "__main__":
    main()
