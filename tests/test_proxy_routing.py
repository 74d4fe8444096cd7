"""The reference proxy's routing core: pure decisions, property-tested without sockets."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.proxy import affinity_cookie
from harness.proxy.ring import HashRing
from harness.proxy.routing import (
    PREFERRED_UNAVAILABLE,
    Backend,
    RouterConfig,
    RouteRequest,
    least_loaded,
    route,
)

SECRET = b"test-secret"
IDS = ["r1", "r2", "r3"]


def req(headers=None, cookies=None, ip="127.16.0.1"):
    return RouteRequest(headers=headers or {}, cookies=cookies or {}, client_ip=ip)


def backends(**overrides):
    return [Backend(i, **overrides.get(i, {})) for i in IDS]


# ---- the hash ring --------------------------------------------------------------------

keys = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=200, unique=True)
names = st.lists(st.from_regex(r"r[0-9]{1,3}", fullmatch=True), min_size=1, max_size=8,
                 unique=True)


@settings(max_examples=60, deadline=None)
@given(names, keys, st.from_regex(r"n[0-9]{1,3}", fullmatch=True))
def test_adding_a_replica_moves_keys_only_to_it(members, ks, new):
    ring = HashRing(members, vnodes=40)
    before = {k: ring.lookup(k) for k in ks}
    ring.add(new)
    for k in ks:
        assert ring.lookup(k) in (before[k], new)


@settings(max_examples=60, deadline=None)
@given(names, keys, st.data())
def test_removing_a_replica_moves_only_its_keys(members, ks, data):
    ring = HashRing(members, vnodes=40)
    gone = data.draw(st.sampled_from(members))
    before = {k: ring.lookup(k) for k in ks}
    ring.remove(gone)
    for k in ks:
        if before[k] != gone:
            assert ring.lookup(k) == before[k]
        else:
            assert ring.lookup(k) != gone


def test_ring_balance_and_bounded_remap():
    ring = HashRing(["r1", "r2", "r3"])
    ks = [f"user-{i}" for i in range(3000)]
    owners = [ring.lookup(k) for k in ks]
    for r in ("r1", "r2", "r3"):
        assert 0.25 < owners.count(r) / len(ks) < 0.42
    ring.add("r4")
    moved = sum(1 for k, o in zip(ks, owners, strict=True) if ring.lookup(k) != o)
    assert 0.15 < moved / len(ks) < 0.35  # about 1/4, never "most"


def test_ring_skips_unhealthy_and_handles_empty():
    ring = HashRing(["r1", "r2"])
    owner = ring.lookup("k")
    other = ({"r1", "r2"} - {owner}).pop()
    assert ring.lookup("k", skip={owner}) == other
    assert ring.lookup("k", skip={"r1", "r2"}) is None
    assert HashRing().lookup("k") is None


# ---- the signed cookie ----------------------------------------------------------------

@given(st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True))
def test_cookie_roundtrip_and_tamper(replica):
    value = affinity_cookie.sign(replica, SECRET)
    assert affinity_cookie.verify(value, SECRET) == replica
    assert affinity_cookie.verify(value, b"other-secret") is None
    forged = value.replace(replica, replica + "x", 1)
    assert affinity_cookie.verify(forged, SECRET) is None
    assert affinity_cookie.verify("garbage", SECRET) is None


# ---- decisions ------------------------------------------------------------------------

def test_least_loaded_prefers_low_load_then_soft_then_hard():
    config = RouterConfig(soft_limit=2, hard_limit=3)
    rng = random.Random(1)
    bs = [Backend("r1", inflight=1), Backend("r2", inflight=0), Backend("r3", inflight=0)]
    picks = {least_loaded(bs, config, rng).id for _ in range(50)}
    assert picks == {"r2", "r3"}  # random among the equally least loaded
    over_soft = [Backend("r1", inflight=2), Backend("r2", inflight=5)]
    assert least_loaded(over_soft, config, rng).id == "r1"
    full = [Backend("r1", inflight=3), Backend("r2", healthy=False)]
    assert least_loaded(full, config, rng) is None


def test_force_instance_has_no_fallback():
    config = RouterConfig()
    rng = random.Random(0)
    assert route(req({"fly-force-instance-id": "r2"}), backends(), config, None, rng).replica \
        == "r2"
    down = route(req({"fly-force-instance-id": "r2"}), backends(r2={"healthy": False}),
                 config, None, rng)
    assert down.replica is None and down.status == 503 and down.reason == "forced-unavailable"
    unknown = route(req({"fly-force-instance-id": "r9"}), backends(), config, None, rng)
    assert unknown.replica is None and unknown.status == 404


def test_prefer_instance_falls_back_with_a_header():
    config = RouterConfig()
    rng = random.Random(0)
    ok = route(req({"fly-prefer-instance-id": "r3"}), backends(), config, None, rng)
    assert (ok.replica, ok.reason) == ("r3", "preferred")
    fallback = route(req({"fly-prefer-instance-id": "r3"}), backends(r3={"healthy": False}),
                     config, None, rng)
    assert fallback.replica in ("r1", "r2")
    assert fallback.request_headers == {PREFERRED_UNAVAILABLE: "r3"}


def test_cookie_mode_pins_and_repins_tampered_or_dead():
    config = RouterConfig(mode="cookie", secret=SECRET)
    rng = random.Random(0)
    first = route(req(), backends(), config, None, rng)
    assert first.reason == "cookie-missing" and first.set_cookie
    pinned = affinity_cookie.verify(first.set_cookie, SECRET)
    assert pinned == first.replica
    again = route(req(cookies={config.cookie_name: first.set_cookie}), backends(), config, None,
                  rng)
    assert (again.replica, again.reason, again.set_cookie) == (pinned, "cookie", None)
    forged = route(req(cookies={config.cookie_name: "r1.0000000000000000"}), backends(),
                   config, None, rng)
    assert forged.reason == "cookie-invalid" and forged.set_cookie
    dead = route(req(cookies={config.cookie_name: first.set_cookie}),
                 backends(**{pinned: {"healthy": False}}), config, None, rng)
    assert dead.reason == "cookie-target-down" and dead.replica != pinned
    assert affinity_cookie.verify(dead.set_cookie, SECRET) == dead.replica


@pytest.mark.parametrize("hash_on, request_for", [
    ("client-ip", lambda k: req(ip=k)),
    ("header:x-session-id", lambda k: req(headers={"x-session-id": k})),
    ("cookie:sid", lambda k: req(cookies={"sid": k})),
])
def test_hash_mode_is_stable_per_key(hash_on, request_for):
    config = RouterConfig(mode="hash", hash_on=hash_on)
    ring = HashRing(IDS)
    rng = random.Random(0)
    for key in ("127.16.0.1", "127.16.9.9", "alice"):
        routes = {route(request_for(key), backends(), config, ring, rng).replica
                  for _ in range(5)}
        assert len(routes) == 1


def test_hash_mode_without_key_balances():
    config = RouterConfig(mode="hash", hash_on="header:x-session-id")
    rng = random.Random(3)
    seen = {route(req(), backends(), config, HashRing(IDS), rng).replica for _ in range(60)}
    assert seen == set(IDS)


def test_config_is_validated():
    with pytest.raises(ValueError, match="mode"):
        RouterConfig(mode="sticky")
    with pytest.raises(ValueError, match="hash_on"):
        RouterConfig(mode="hash", hash_on="query:x")
    with pytest.raises(ValueError, match="soft_limit"):
        RouterConfig(soft_limit=10, hard_limit=5)


# ---- draining ---------------------------------------------------------------------------

def test_a_draining_replica_takes_no_new_sessions_but_keeps_pinned_ones():
    config = RouterConfig(mode="cookie", secret=SECRET)
    rng = random.Random(5)
    pool = backends(r2={"draining": True})
    fresh = {route(req(), pool, config, None, rng).replica for _ in range(100)}
    assert fresh == {"r1", "r3"}
    pinned = {"stickler-affinity": affinity_cookie.sign("r2", SECRET)}
    assert route(req(cookies=pinned), pool, config, None, rng).replica == "r2"
    forced = req(headers={"fly-force-instance-id": "r2"})
    assert route(forced, pool, config, None, rng).replica == "r2"


def test_a_draining_replica_leaves_the_hash_ring():
    config = RouterConfig(mode="hash", hash_on="client-ip")
    ring, rng = HashRing(IDS), random.Random(1)
    ips = [f"100.64.{i}.1" for i in range(200)]
    owners = {ip: route(req(ip=ip), backends(), config, ring, rng).replica for ip in ips}
    drained = {ip: route(req(ip=ip), backends(r2={"draining": True}), config, ring,
                         rng).replica for ip in ips}
    assert "r2" not in drained.values()
    # Only r2's keys moved.
    assert all(drained[ip] == owner for ip, owner in owners.items() if owner != "r2")
