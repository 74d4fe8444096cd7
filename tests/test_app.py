"""The fixture app: who served the request, and state that is visibly lost elsewhere."""

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from harness.app.server import make_app
from harness.app.sessions import SessionStore


def test_session_store_new_found_lost():
    store = SessionStore()
    first = store.lookup(None)
    assert first.state == "new"
    first.cart.append("tea")
    assert store.lookup(first.session).state == "found"
    assert store.lookup(first.session).cart == ["tea"]
    other = SessionStore().lookup(first.session)
    assert other.state == "lost" and other.cart == []


def run(coro):
    return asyncio.run(coro)


def test_cart_over_http():
    async def scenario():
        async with TestClient(TestServer(make_app("r7", affinity_cookie="SERVERID"))) as client:
            r = await client.post("/cart?item=tea")
            body = await r.json()
            assert r.headers["X-Replica"] == "r7" and body["replica"] == "r7"
            assert body["state"] == "new" and body["cart"] == ["tea"]
            assert "sid" in r.cookies and r.cookies["SERVERID"].value == "app"
            r = await client.get("/cart?cacheable=1")
            body = await r.json()
            assert body["state"] == "found" and body["cart"] == ["tea"]
            assert r.headers["Cache-Control"] == "max-age=60"
            assert body["cookies_seen"]["sid"]
            r = await client.post("/checkout")
            body = await r.json()
            assert body["ordered"] == ["tea"] and body["cart"] == []
            r = await client.get("/cart", cookies={"sid": "never-issued"})
            assert (await r.json())["state"] == "lost"
            r = await client.get("/healthz")
            assert r.status == 200 and r.headers["X-Replica"] == "r7"
    run(scenario())
