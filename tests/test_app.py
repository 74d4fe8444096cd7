"""The fixture app: who served the request, and state that is visibly lost elsewhere."""

import asyncio
import contextlib
import socket
import subprocess
import time

import aiohttp
import pytest

from harness.app.server import make_app
from harness.app.sessions import SessionStore
from tests.app_server import serving


def test_session_store_new_found_lost():
    store = SessionStore()
    first = store.lookup_now(None)
    assert first.state == "new"
    first.cart.append("tea")
    assert store.lookup_now(first.session).state == "found"
    assert store.lookup_now(first.session).cart == ["tea"]
    other = SessionStore().lookup_now(first.session)
    assert other.state == "lost" and other.cart == []


def run(coro):
    return asyncio.run(coro)


class Client:
    """aiohttp's session with a base URL, like aiohttp's TestClient."""

    def __init__(self, base: str):
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    def get(self, path, **kw):
        return self.session.get(self.base + path, **kw)

    def post(self, path, **kw):
        return self.session.post(self.base + path, **kw)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.session.close()


def test_cart_over_http():
    with serving(make_app("r7", affinity_cookie="SERVERID")) as base:
        run(_cart_scenario(base))


async def _cart_scenario(base):
    if True:
        async with Client(base) as client:
            r = await client.post("/cart?item=tea")
            body = await r.json()
            assert r.headers["X-Replica"] == "r7" and body["replica"] == "r7"
            assert body["state"] == "new" and body["cart"] == ["tea"]
            assert "sid" in r.cookies and r.cookies["SERVERID"].value == "app"
            sid = r.cookies["sid"].value
            r = await client.get("/cart?cacheable=1", cookies={"sid": sid})
            body = await r.json()
            assert body["state"] == "found" and body["cart"] == ["tea"]
            assert r.headers["Cache-Control"] == "max-age=60"
            assert body["cookies_seen"]["sid"]
            r = await client.post("/checkout", cookies={"sid": sid})
            body = await r.json()
            assert body["ordered"] == ["tea"] and body["cart"] == []
            r = await client.get("/cart", cookies={"sid": "never-issued"})
            assert (await r.json())["state"] == "lost"
            r = await client.get("/healthz")
            assert r.status == 200 and r.headers["X-Replica"] == "r7"


def test_redis_url_parsing():
    from harness.app.redis_store import parse_url

    assert parse_url("redis://127.9.0.1:6390/2") == ("127.9.0.1", 6390, 2)
    assert parse_url("redis://127.9.0.1") == ("127.9.0.1", 6379, 0)
    for bad in ("127.0.0.1:6379", "redis://", "redis://127.0.0.1:6379/x"):
        with pytest.raises(ValueError, match="redis://host:port|must be a number"):
            parse_url(bad)


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on loopback, for this test only."""
    from harness.runtime import net
    from harness.runtime.store import redis_command

    port = net.free_port("127.0.0.1")
    proc = subprocess.Popen(redis_command("127.0.0.1", port, tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.kill()
        proc.wait()


def test_replicas_sharing_redis_see_each_others_sessions(redis_url):
    url, redis_proc = redis_url

    with serving(make_app("r1", session_store=url)) as b1, \
            serving(make_app("r2", session_store=url)) as b2:
        run(_shared_store_scenario(b1, b2, redis_proc))


async def _shared_store_scenario(b1, b2, redis_proc):
    if True:
        async with Client(b1) as one, Client(b2) as two:
            r = await one.post("/cart?item=tea")
            sid = r.cookies["sid"].value
            body = await (await two.post("/cart?item=milk", cookies={"sid": sid})).json()
            assert body["replica"] == "r2" and body["state"] == "found"
            assert body["cart"] == ["tea", "milk"]
            body = await (await one.post("/checkout", cookies={"sid": sid})).json()
            assert body["ordered"] == ["tea", "milk"]
            body = await (await two.get("/cart", cookies={"sid": sid})).json()
            assert body["state"] == "found" and body["cart"] == []
            body = await (await two.get("/cart", cookies={"sid": "never-issued"})).json()
            assert body["state"] == "lost"
            assert (await (await one.get("/")).json())["sessions"] == 2
            # The shared store is a single point of failure: without it, every replica
            # answers 503, naming the store.
            redis_proc.kill()
            redis_proc.wait()
            r = await two.get("/cart", cookies={"sid": sid})
            assert r.status == 503 and "session store redis://" in (await r.json())["error"]
