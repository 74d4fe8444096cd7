"""The reference proxy's I/O shell (aiohttp): applies the pure routing decisions.

    python -m harness.proxy --config proxy.yaml

It forwards each request to the replica `routing.route` names (keep-alive, pooled
connections to replicas), retries a `fly-force-instance-id` request while its replica is
unavailable (no fallback), sets the signed affinity cookie when told to and hides it from the
app, appends X-Forwarded-For, runs active health checks, and re-reads its config on SIGHUP.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from harness.proxy.config import ProxyConfig, load_config
from harness.proxy.ring import HashRing
from harness.proxy.routing import Backend, Route, RouteRequest, route

log = logging.getLogger("stickler.proxy")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "content-length", "host"}
PASSIVE_DOWN_S = 2.0  # after a refused connection, without active checks


@dataclass
class State:
    healthy: bool = True
    inflight: int = 0
    fails: int = 0
    oks: int = 0
    down_until: float = 0.0


class Proxy:
    def __init__(self, config_path: str):
        self.config_path = config_path
        self.config: ProxyConfig = load_config(config_path)
        self.state: dict[str, State] = {}
        self.ring = HashRing()
        self.rng = random.Random()
        self.session: aiohttp.ClientSession | None = None
        self._apply(self.config)

    def _apply(self, config: ProxyConfig) -> None:
        self.config = config
        ids = [u.id for u in config.replicas]
        self.state = {i: self.state.get(i, State()) for i in ids}
        self.ring = HashRing(ids)

    def reload(self) -> None:
        try:
            self._apply(load_config(self.config_path))
            log.info("reloaded %s (generation %d)", self.config_path, self.config.generation)
        except Exception as exc:  # keep serving the old config, as balancers do
            log.error("reload failed, keeping generation %d: %s", self.config.generation, exc)

    def backends(self) -> list[Backend]:
        now = time.monotonic()
        return [Backend(u.id, u.region, s.healthy and s.down_until <= now, s.inflight)
                for u in self.config.replicas for s in [self.state[u.id]]]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rr = RouteRequest(headers={k.lower(): v for k, v in request.headers.items()},
                          cookies=dict(request.cookies), client_ip=request.remote or "",
                          path=request.path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.force_timeout_ms / 1000
        for _attempt in range(3):
            decision = route(rr, self.backends(), self.config.router, self.ring, self.rng)
            while decision.reason == "forced-unavailable" and loop.time() < deadline:
                await asyncio.sleep(0.05)
                decision = route(rr, self.backends(), self.config.router, self.ring, self.rng)
            if decision.replica is None:
                return self._reply(web.Response(status=decision.status,
                                                text=f"stickler-proxy: {decision.reason}\n"),
                                   decision)
            try:
                return await self._forward(request, body, decision)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                self._mark_failed(decision.replica, exc)
                if decision.reason == "forced":
                    continue  # its replica may come back before the deadline
        return self._reply(web.Response(status=502, text="stickler-proxy: upstream failed\n"),
                           Route(None, "upstream-failed", 502))

    async def _forward(self, request: web.Request, body: bytes,
                       decision: Route) -> web.StreamResponse:
        upstream = next(u for u in self.config.replicas if u.id == decision.replica)
        headers = CIMultiDict((k, v) for k, v in request.headers.items()
                              if k.lower() not in HOP_BY_HOP and k.lower() != "cookie")
        cookie = self._cookie_header(request)
        if cookie:
            headers["Cookie"] = cookie
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {request.remote}" if prior else request.remote
        headers.update(decision.request_headers)
        state = self.state[upstream.id]
        state.inflight += 1
        try:
            assert self.session is not None
            async with self.session.request(
                    request.method, f"http://{upstream.host}:{upstream.port}{request.path_qs}",
                    headers=headers, data=body or None, allow_redirects=False) as resp:
                payload = await resp.read()
                out = CIMultiDict((k, v) for k, v in resp.headers.items()
                                  if k.lower() not in HOP_BY_HOP)
                status = resp.status
        finally:
            state.inflight -= 1
        response = web.Response(status=status, body=payload, headers=out)
        if decision.set_cookie:
            response.set_cookie(self.config.router.cookie_name, decision.set_cookie, path="/",
                                httponly=True)
        return self._reply(response, decision)

    def _cookie_header(self, request: web.Request) -> str:
        """The client's cookies minus the proxy's own affinity cookie (the app never sees it)."""
        name = self.config.router.cookie_name
        kept = [f"{k}={v}" for k, v in request.cookies.items() if k != name]
        return "; ".join(kept)

    def _reply(self, response: web.Response, decision: Route) -> web.Response:
        response.headers["X-Stickler-Config"] = str(self.config.generation)
        response.headers["X-Stickler-Route"] = decision.reason
        return response

    def _mark_failed(self, replica: str, exc: BaseException) -> None:
        state = self.state.get(replica)
        if state:
            state.down_until = time.monotonic() + PASSIVE_DOWN_S
            log.warning("replica %s failed (%s); passively down for %.0f s", replica,
                        type(exc).__name__, PASSIVE_DOWN_S)

    async def health_loop(self) -> None:
        """Active checks: `fall` failures mark a replica down, `rise` successes up again."""
        while True:
            health = self.config.health
            if health["enabled"]:
                await asyncio.gather(*(self._check(u) for u in self.config.replicas))
            await asyncio.sleep(health["interval_ms"] / 1000)

    async def _check(self, upstream) -> None:
        state = self.state.get(upstream.id)
        if state is None or self.session is None:
            return
        timeout = aiohttp.ClientTimeout(total=self.config.health["interval_ms"] / 1000)
        try:
            async with self.session.get(f"http://{upstream.host}:{upstream.port}/healthz",
                                        timeout=timeout) as resp:
                ok = 200 <= resp.status < 400
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        if ok:
            state.oks, state.fails = state.oks + 1, 0
            if not state.healthy and state.oks >= self.config.health["rise"]:
                state.healthy = True
                log.info("replica %s is up", upstream.id)
        else:
            state.fails, state.oks = state.fails + 1, 0
            if state.healthy and state.fails >= self.config.health["fall"]:
                state.healthy = False
                log.info("replica %s is down", upstream.id)


def make_app(proxy: Proxy) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)

    async def start(app: web.Application) -> None:
        proxy.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=30, connect=2), auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar())
        checker = asyncio.create_task(proxy.health_loop())
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, proxy.reload)
        app["checker"] = checker

    async def stop(app: web.Application) -> None:
        app["checker"].cancel()
        if proxy.session:
            await proxy.session.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    proxy = Proxy(args.config)
    try:  # uvloop roughly halves the event loop's overhead; the proxy works without it
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    log.info("stickler proxy on %s:%d, mode %s, generation %d", proxy.config.host,
             proxy.config.port, proxy.config.router.mode, proxy.config.generation)
    web.run_app(make_app(proxy), host=proxy.config.host, port=proxy.config.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
