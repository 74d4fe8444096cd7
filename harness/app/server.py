"""The fixture app's HTTP shell (aiohttp): one process per replica.

    python -m harness.app --id r1 --host 127.0.0.1 --port 8081

Every response carries `X-Replica` and a JSON body naming the replica, the session state
(new, found or lost), the cart, and the cookies and client-address headers the app received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

from aiohttp import web

from harness.app.replay import MODES, PIN_COOKIE, replay_target
from harness.app.sessions import SessionStore, StoreUnavailable
from harness.runtime.net import ensure_cluster_host

AFFINITY_PLACEHOLDER = "app"


def make_app(replica_id: str, session_cookie: str = "sid", affinity_cookie: str | None = None,
             region: str | None = None, replay_mode: str = "", peers: tuple[str, ...] = (),
             leader: str | None = None, replay_cache_ttl: int = 0,
             replay_options: str = "", session_store: str = "memory") -> web.Application:
    store = make_store(session_store)
    started = {"requests": 0, "replays_issued": 0}

    @web.middleware
    async def fly_replay(request: web.Request, handler):
        """The blueprint's middleware: answer with fly-replay when another replica owns it."""
        if request.path == "/healthz" or "fly-replay-failed" in request.headers:
            return await handler(request)
        if replay_mode == "always":
            if "fly-replay-src" in request.headers:
                return await handler(request)
            started["replays_issued"] += 1
            return web.Response(status=307, text="replay\n", headers={
                "fly-replay": replay_options, "X-Replica": replica_id})
        move_to = request.query.get("move_to")
        if move_to and move_to != replica_id and replay_mode == "pin-cookie":
            # The blueprint's app moving a session: replay to the new home and tell the proxy
            # to forget the cached decision for it.
            started["replays_issued"] += 1
            return web.Response(status=307, text=f"moving to {move_to}\n", headers={
                # `state` makes this replay uncacheable, so only the invalidation decides
                # what the proxy remembers afterwards.
                "fly-replay": f"instance={move_to};state=moved",
                "fly-replay-cache": "invalidate",
                "X-Replica": replica_id})
        target = None if move_to == replica_id else replay_target(
            replay_mode, replica_id, request.method, request.cookies, session_cookie, peers,
            leader)
        if target is None:
            resp = await handler(request)
            if replay_mode == "pin-cookie":
                resp.set_cookie(PIN_COOKIE, replica_id, path="/", max_age=6 * 24 * 3600)
            return resp
        started["replays_issued"] += 1
        resp = web.Response(status=307, text=f"replay to {target}\n",
                            headers={"fly-replay": ";".join(filter(None, [
                                f"instance={target}", replay_options])),
                                "X-Replica": replica_id})
        if replay_cache_ttl:
            resp.headers["fly-replay-cache"] = request.path
            resp.headers["fly-replay-cache-ttl-secs"] = str(replay_cache_ttl)
        return resp

    @web.middleware
    async def store_errors(request: web.Request, handler):
        try:
            return await handler(request)
        except StoreUnavailable as exc:
            return web.json_response({"replica": replica_id, "error": str(exc)}, status=503,
                                     headers={"X-Replica": replica_id})

    app = web.Application(middlewares=[store_errors, *([fly_replay] if replay_mode else [])])

    async def close_store(app: web.Application) -> None:
        await store.close()

    app.on_cleanup.append(close_store)

    def respond(request: web.Request, body: dict, status: int = 200) -> web.Response:
        started["requests"] += 1
        body = {
            "replica": replica_id,
            "region": region,
            "pid": os.getpid(),
            "path": request.path_qs,
            "cookies_seen": dict(request.cookies),
            "peer": request.remote,
            # Every X-Forwarded-For line, joined: the last hop is what the balancer itself saw
            # (HAProxy's forwardfor adds its own header line, NGINX appends to the value).
            "x_forwarded_for": ", ".join(request.headers.getall("X-Forwarded-For", [])) or None,
            **body,
        }
        resp = web.json_response(body, status=status)
        resp.headers["X-Replica"] = replica_id
        # What the proxy told this replica about replays, for the harness to record.
        for name in ("fly-replay-src", "fly-replay-cache-status", "fly-replay-failed",
                     "fly-preferred-instance-unavailable"):
            if name in request.headers:
                resp.headers[f"X-Seen-{name}"] = request.headers[name]
        return resp

    async def cart(request: web.Request) -> web.Response:
        delay = request.query.get("delay_ms")
        if delay and delay.isdigit():
            await asyncio.sleep(min(int(delay), 10_000) / 1000)
        found = await store.lookup(request.cookies.get(session_cookie))
        if request.method == "POST":
            item = request.query.get("item") or (await request.text()).strip() or "item"
            found.cart.append(item[:64])
            await store.save(found)
        resp = respond(request, {"session": found.session, "state": found.state,
                                 "cart": list(found.cart)})
        if request.method == "GET" and request.query.get("cacheable"):
            # Freshness information makes the response cacheable in HTTP's (and HAProxy's) eyes.
            resp.headers["Cache-Control"] = "max-age=60"
        if found.state == "new":
            resp.set_cookie(session_cookie, found.session, path="/", httponly=True)
        if affinity_cookie and affinity_cookie not in request.cookies:
            resp.set_cookie(affinity_cookie, AFFINITY_PLACEHOLDER, path="/")
        return resp

    async def checkout(request: web.Request) -> web.Response:
        """Place the order: the cart empties. An order from a lost session is an empty one."""
        found = await store.lookup(request.cookies.get(session_cookie))
        ordered = list(found.cart)
        found.cart.clear()
        await store.save(found)
        resp = respond(request, {"session": found.session, "state": found.state, "cart": [],
                                 "ordered": ordered})
        if found.state == "new":
            resp.set_cookie(session_cookie, found.session, path="/", httponly=True)
        return resp

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n", headers={"X-Replica": replica_id})

    async def info(request: web.Request) -> web.Response:
        return respond(request, {"sessions": await store.count(), "requests": started["requests"],
                                 "replays_issued": started["replays_issued"]})

    async def page(request: web.Request) -> web.Response:
        """Any other path is a page of the shop, seen within the session: replayed traces
        (a browser's HAR, a production log) ask for paths of their own."""
        found = await store.lookup(request.cookies.get(session_cookie))
        resp = respond(request, {"session": found.session, "state": found.state,
                                 "cart": list(found.cart)})
        if found.state == "new":
            resp.set_cookie(session_cookie, found.session, path="/", httponly=True)
        return resp

    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/cart", cart)
    app.router.add_post("/checkout", checkout)
    app.router.add_get("/", info)
    app.router.add_route("*", "/{tail:.*}", page)
    return app


def make_store(spec: str):
    """`memory` (this replica's own) or `redis://host:port[/db]` (shared by all replicas)."""
    if spec == "memory":
        return SessionStore()
    from harness.app.redis_store import RedisSessionStore

    return RedisSessionStore(spec)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)  # unwind so the log is flushed


def main(argv: list[str] | None = None) -> None:
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
    app = make_app(args.id, args.session_cookie, args.affinity_cookie, args.region,
                   args.replay_mode, tuple(p for p in args.peers.split(",") if p), args.leader,
                   args.replay_cache_ttl, args.replay_options, args.session_store)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print(json.dumps({"replica": args.id, "listening": f"{args.host}:{args.port}"}), flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=False)


if __name__ == "__main__":
    main()
