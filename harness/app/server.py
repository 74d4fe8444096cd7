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

from harness.app.sessions import SessionStore

AFFINITY_PLACEHOLDER = "app"


def make_app(replica_id: str, session_cookie: str = "sid", affinity_cookie: str | None = None,
             region: str | None = None) -> web.Application:
    store = SessionStore()
    app = web.Application()
    started = {"requests": 0}

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
        return resp

    async def cart(request: web.Request) -> web.Response:
        delay = request.query.get("delay_ms")
        if delay and delay.isdigit():
            await asyncio.sleep(min(int(delay), 10_000) / 1000)
        found = store.lookup(request.cookies.get(session_cookie))
        if request.method == "POST":
            item = request.query.get("item") or (await request.text()).strip() or "item"
            found.cart.append(item[:64])
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
        found = store.lookup(request.cookies.get(session_cookie))
        ordered = list(found.cart)
        found.cart.clear()
        resp = respond(request, {"session": found.session, "state": found.state, "cart": [],
                                 "ordered": ordered})
        if found.state == "new":
            resp.set_cookie(session_cookie, found.session, path="/", httponly=True)
        return resp

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n", headers={"X-Replica": replica_id})

    async def info(request: web.Request) -> web.Response:
        return respond(request, {"sessions": len(store.carts), "requests": started["requests"]})

    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/cart", cart)
    app.router.add_post("/checkout", checkout)
    app.router.add_get("/", info)
    return app


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
    args = parser.parse_args(argv)
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.0.0.0/8)")
    app = make_app(args.id, args.session_cookie, args.affinity_cookie, args.region)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print(json.dumps({"replica": args.id, "listening": f"{args.host}:{args.port}"}), flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=False)


if __name__ == "__main__":
    main()
