"""The reference proxy's I/O shell: applies the pure routing decisions.

    python -m harness.proxy --config proxy.yaml

It forwards each request to the replica `routing.route` names (keep-alive, pooled
connections to replicas), retries a `fly-force-instance-id` request while its replica is
unavailable (no fallback), sets the signed affinity cookie when told to and hides it from the
app, appends X-Forwarded-For, runs active health checks, and re-reads its config on SIGHUP.
HTTP itself (both sides, keep-alive, pooling) is in http1.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import time
from dataclasses import dataclass

from multidict import CIMultiDict

from harness.proxy import client_ip
from harness.proxy.config import ProxyConfig, load_config
from harness.proxy.http1 import ClientConnection, IncomingRequest, Pool, Reply, Upstream
from harness.proxy.replay import (
    JSON_TYPE,
    MAX_REPLAY_BODY,
    Replay,
    ReplayError,
    apply_transform,
    choose_target,
    failed_header,
    parse_header,
    parse_json,
    src_header,
)
from harness.proxy.replay_cache import ReplayCache, SessionRule, validate_cacheable
from harness.proxy.ring import HashRing
from harness.proxy.routing import Backend, Route, RouteRequest, least_loaded, route

log = logging.getLogger("stickler.proxy")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "content-length", "host"}
PASSIVE_DOWN_S = 2.0  # after a refused connection, without active checks
REPLAY_TIMEOUT_S = 5.0  # Fly documents "a while" before a generic 5xx; ours is 5 s


def replay_of(up: Upstream) -> Replay | None:
    """The replay an answer asks for, or None; raises ReplayError when it is malformed."""
    if up.headers.get("Content-Type", "").startswith(JSON_TYPE):
        return parse_json(up.payload)
    header = up.headers.get("fly-replay")
    return parse_header(header) if header else None


@dataclass
class State:
    healthy: bool = True
    inflight: int = 0
    fails: int = 0
    oks: int = 0
    down_until: float = 0.0


class Proxy:
    def __init__(self, config_path: str | None, config: ProxyConfig | None = None):
        self.config_path = config_path
        self.config: ProxyConfig = config or load_config(config_path)
        self.state: dict[str, State] = {}
        self.ring = HashRing()
        self.rng = random.Random()
        self.pool = Pool()
        self.recorder = None  # a recorder.Recorder in recording mode (`stickler record`)
        self.cache: ReplayCache | None = None
        self._cache_rules: tuple[SessionRule, ...] = ()
        self._apply(self.config)

    def _apply(self, config: ProxyConfig) -> None:
        self.config = config
        ids = [u.id for u in config.replicas]
        self.state = {i: self.state.get(i, State()) for i in ids}
        self.ring = HashRing(ids)
        if self.cache is None or self._cache_rules != config.replay_cache:
            # New rules start an empty cache; unchanged rules keep it across reloads.
            self.cache = ReplayCache(config.replay_cache)
            self._cache_rules = config.replay_cache

    @classmethod
    def from_config(cls, config: ProxyConfig) -> Proxy:
        """A proxy built in code (`stickler record`), with no file to reload."""
        return cls(None, config)

    def reload(self) -> None:
        if self.config_path is None:
            log.info("no config file to reload")
            return
        try:
            self._apply(load_config(self.config_path))
            log.info("reloaded %s (generation %d)", self.config_path, self.config.generation)
        except Exception as exc:  # keep serving the old config, as balancers do
            log.error("reload failed, keeping generation %d: %s", self.config.generation, exc)

    def backends(self) -> list[Backend]:
        now = time.monotonic()
        return [Backend(u.id, u.region, s.healthy and s.down_until <= now, s.inflight, u.drain)
                for u in self.config.replicas for s in [self.state[u.id]]]

    def client_address(self, request: IncomingRequest) -> str:
        """The client's address: the peer (or the PROXY protocol source), or from XFF."""
        if self.config.client_ip == "xff":
            return client_ip.from_xff(request.peer, ",".join(
                request.headers.getall("X-Forwarded-For", ())), self.config.trusted_proxies)
        return request.peer

    async def handle(self, request: IncomingRequest) -> Reply:
        if self.recorder is not None:
            return await self.pass_through(request)
        body = request.body
        client = self.client_address(request)
        rr = RouteRequest(headers={k.lower(): v for k, v in request.headers.items()},
                          cookies=request.cookies, client_ip=client, path=request.path)
        headers = self._upstream_headers(request, client)
        host = request.host
        cache_status = None
        if self.cache is not None:
            hit = self.cache.lookup(host, request.path, rr.cookies, rr.headers)
            if hit.target and self._available(hit.target):
                try:  # a cache hit never reaches the origin and carries no fly-replay-src
                    up = await self._send(hit.target, request.method, request.target,
                                          {**headers, "fly-replay-cache-status": "hit"}, body)
                except OSError as exc:  # refused, reset, timed out
                    self._mark_failed(hit.target, exc)
                else:
                    served = Route(hit.target, "replay-cache-hit")
                    if replay_of(up) is None:
                        return self._respond(up, served)
                    # The cached target moved the session on (typically with an invalidate).
                    return await self._replay(request, body, headers, up, served, host, rr,
                                              None)
            cache_status = hit.status

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.force_timeout_ms / 1000
        for _attempt in range(3):
            decision = route(rr, self.backends(), self.config.router, self.ring, self.rng)
            while decision.reason == "forced-unavailable" and loop.time() < deadline:
                await asyncio.sleep(0.05)
                decision = route(rr, self.backends(), self.config.router, self.ring, self.rng)
            if decision.replica is None:
                return self._error(decision.status, decision.reason)
            try:
                up = await self._send(decision.replica, request.method, request.target,
                                      {**headers, **decision.request_headers}, body)
            except OSError as exc:  # refused, reset, timed out
                self._mark_failed(decision.replica, exc)
                continue
            if replay_of(up) is None:
                return self._respond(up, decision)
            return await self._replay(request, body, headers, up, decision, host, rr,
                                      cache_status)
        return self._error(502, "upstream-failed")

    async def pass_through(self, request: IncomingRequest) -> Reply:
        """Recording mode: forward to the one upstream untouched (fly-replay answers too)
        and record the exchange."""
        client = self.client_address(request)
        upstream = self.config.replicas[0]
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() != "x-forwarded-for"}
        prior = ", ".join(request.headers.getall("X-Forwarded-For", ()))
        headers["X-Forwarded-For"] = f"{prior}, {client}" if prior else client
        try:
            up = await self._send(upstream.id, request.method, request.target, headers,
                                  request.body)
        except OSError as exc:
            reply = self._error(502, "upstream-failed", str(exc))
        else:
            reply = Reply(up.status, CIMultiDict((k, v) for k, v in up.headers.items()
                                                 if k.lower() not in HOP_BY_HOP), up.payload)
        self.recorder.add(request, reply, client, f"{upstream.host}:{upstream.port}")
        return reply

    async def _replay(self, request: IncomingRequest, body: bytes, headers: dict[str, str],
                      up: Upstream, decision: Route, host: str, rr: RouteRequest,
                      cache_status: str | None) -> Reply:
        """The app answered with fly-replay: send the request where it says, once."""
        source = decision.replica or ""
        if len(body) > MAX_REPLAY_BODY:
            return self._error(413, "replay-too-large", f"the app asked to replay a request of "
                               f"{len(body)} bytes; requests over 1 MB cannot be replayed")
        try:
            replay = replay_of(up)
        except ReplayError as exc:
            return self._error(502, "replay-invalid", str(exc))
        if up.headers.get("fly-replay-cache", "").lower() == "invalidate" and self.cache:
            self.cache.invalidate(host, request.path, rr.cookies, rr.headers)
        loop = asyncio.get_running_loop()
        started = loop.time()
        timeout = replay.timeout_s if replay.timeout_s is not None else REPLAY_TIMEOUT_S
        path, replay_headers = apply_transform(request.target, dict(headers), replay.transform)
        region = next((u.region for u in self.config.replicas if u.id == source), None)
        replay_headers["fly-replay-src"] = src_header(source, region, int(time.time() * 1e6),
                                                      replay.state)
        replay_headers["fly-replay-cache-status"] = cache_status or "miss"
        reason = "no_candidate"
        while loop.time() - started < timeout:
            target, extra, reason = choose_target(replay, self.backends(), source,
                                                  self.config.router.hard_limit, self.rng)
            if target is None:
                await asyncio.sleep(0.05)
                continue
            try:
                answer = await self._send(target, request.method, path,
                                          {**replay_headers, **extra}, body)
            except OSError as exc:  # refused, reset, timed out
                self._mark_failed(target, exc)
                reason = "retries_exhausted"
                continue
            self._remember(replay, up, target, host, request.path, rr)
            return self._respond(answer, Route(target, f"replayed-{reason}",
                                               set_cookie=decision.set_cookie))
        elapsed = int((loop.time() - started) * 1000)
        if replay.fallback:
            back = source if self._available(source) else None
            if back is None and replay.fallback == "prefer_self":
                back = least_loaded(self.backends(), self.config.router, self.rng)
                back = back.id if back else None
            if back:
                # Fallback deliveries cannot replay again: their answer goes to the client.
                failed = failed_header(replay, source, reason, elapsed)
                answer = await self._send(back, request.method, request.target,
                                          {**headers, "fly-replay-failed": failed}, body)
                answer.headers.popall("fly-replay", None)
                return self._respond(answer, Route(back, "replay-fallback"))
        return self._error(503, "replay-failed", f"replay failed ({reason}) after {elapsed} ms")

    def _remember(self, replay: Replay, up: Upstream, target: str, host: str, path: str,
                  rr: RouteRequest) -> None:
        """Cache the decision where the origin's response or the session rules ask for it."""
        if self.cache is None or validate_cacheable(replay.fields()):
            return
        pattern = up.headers.get("fly-replay-cache") or replay.cache.get("prefix")
        ttl = up.headers.get("fly-replay-cache-ttl-secs") or replay.cache.get("ttl")
        bypass = (up.headers.get("fly-replay-cache-allow-bypass", "").lower() == "yes"
                  or bool(replay.cache.get("allow_bypass")))
        if pattern and pattern.lower() != "invalidate" and ttl:
            try:
                self.cache.store_path(host, pattern, int(ttl), target, allow_bypass=bypass,
                                      request_path=path)
            except ValueError as exc:
                log.warning("not caching replay for %s: %s", pattern, exc)
        self.cache.store_session(host, path, rr.cookies, rr.headers, target)

    def _available(self, replica: str) -> bool:
        return any(b.id == replica and b.healthy for b in self.backends())

    def _upstream_headers(self, request: IncomingRequest, client: str) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() not in ("cookie",
                                                                          "x-forwarded-for")}
        cookie = self._cookie_header(request)
        if cookie:
            headers["Cookie"] = cookie
        # Append the address this hop takes for the client's (the peer, the PROXY protocol
        # source, or the trusted X-Forwarded-For hop), as NGINX's $proxy_add_x_forwarded_for
        # does after its realip module has set $remote_addr.
        prior = ", ".join(request.headers.getall("X-Forwarded-For", ()))
        headers["X-Forwarded-For"] = f"{prior}, {client}" if prior else client
        return headers

    async def _send(self, replica: str, method: str, path_qs: str, headers: dict[str, str],
                    body: bytes) -> Upstream:
        upstream = next(u for u in self.config.replicas if u.id == replica)
        state = self.state[upstream.id]
        state.inflight += 1
        try:
            return await self.pool.request(upstream.host, upstream.port, method, path_qs,
                                           headers, body)
        finally:
            state.inflight -= 1

    def _respond(self, up: Upstream, decision: Route) -> Reply:
        headers = CIMultiDict((k, v) for k, v in up.headers.items()
                              if k.lower() not in HOP_BY_HOP)
        if decision.set_cookie:
            headers.add("Set-Cookie", f"{self.config.router.cookie_name}="
                                      f"{decision.set_cookie}; HttpOnly; Path=/")
        return self._reply(Reply(up.status, headers, up.payload), decision)

    def _error(self, status: int, reason: str, detail: str = "") -> Reply:
        text = f"stickler-proxy: {reason}" + (f": {detail}" if detail else "") + "\n"
        headers = CIMultiDict({"Content-Type": "text/plain; charset=utf-8"})
        return self._reply(Reply(status, headers, text.encode()), Route(None, reason, status))

    def _cookie_header(self, request: IncomingRequest) -> str:
        """The client's cookies minus the proxy's own affinity cookie (the app never sees it)."""
        name = self.config.router.cookie_name
        kept = [f"{k}={v}" for k, v in request.cookies.items() if k != name]
        return "; ".join(kept)

    def _reply(self, response: Reply, decision: Route) -> Reply:
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
        if state is None:
            return
        try:
            answer = await self.pool.request(upstream.host, upstream.port, "GET", "/healthz",
                                             {}, b"", self.config.health["interval_ms"] / 1000)
            ok = 200 <= answer.status < 400
        except OSError:
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


async def serve(proxy: Proxy) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP re-reads the config."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, proxy.reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    server = await loop.create_server(
        lambda: ClientConnection(proxy.handle,
                                 proxy_protocol=proxy.config.client_ip == "proxy-protocol"),
        proxy.config.host, proxy.config.port, reuse_address=True, backlog=1024)
    checker = loop.create_task(proxy.health_loop())
    try:
        await stopped.wait()
    finally:
        checker.cancel()
        server.close()
        proxy.pool.close()


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
    log.info("stickler proxy on %s:%d, mode %s, client address from %s, generation %d",
             proxy.config.host, proxy.config.port, proxy.config.router.mode,
             proxy.config.client_ip, proxy.config.generation)
    asyncio.run(serve(proxy))


if __name__ == "__main__":
    main()
