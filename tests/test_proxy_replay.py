"""fly-replay parsing and target choice (pure), as Fly.io documents them."""

import random

import pytest

from harness.proxy.replay import (
    ReplayError,
    Transform,
    apply_transform,
    choose_target,
    failed_header,
    parse_header,
    parse_json,
    src_header,
)
from harness.proxy.routing import Backend


def test_header_fields():
    r = parse_header('region="ams,any";elsewhere=true;timeout=800ms;fallback=prefer_self;'
                     "state=cart42")
    assert r.regions == ("ams", "any") and r.elsewhere and r.timeout_s == 0.8
    assert r.fallback == "prefer_self" and r.state == "cart42"
    assert parse_header("instance=r2").instance == "r2"
    assert parse_header("prefer_instance=r3;timeout=2s").timeout_s == 2


@pytest.mark.parametrize("header, words", [
    ("instance", "key=value"),
    ("colour=red", "unknown fly-replay field"),
    ("instance=r1;fallback=maybe", "fallback"),
    ("instance=r1;timeout=soon", "timeout"),
    ("state=x", "names no target"),
    ("app=other", "another app"),
])
def test_bad_headers(header, words):
    with pytest.raises(ReplayError, match=words):
        parse_header(header)


def test_json_form_with_transform_and_cache():
    r = parse_json(b'{"instance": "r3", "transform": {"path": "/new?x=1", "delete_headers":'
                   b' ["Cookie"], "set_headers": [{"name": "x-a", "value": "1"}]},'
                   b' "cache": {"prefix": "/cart", "ttl": 30}, "allow_bypass": true}')
    assert r.instance == "r3" and r.transform.path == "/new?x=1"
    assert r.cache == {"prefix": "/cart", "ttl": 30, "allow_bypass": True}
    assert "transform" in r.fields()
    path, headers = apply_transform("/old", {"Cookie": "a=1", "X-A": "0", "Keep": "y"},
                                    r.transform)
    assert path == "/new?x=1" and headers == {"Keep": "y", "x-a": "1"}
    for bad in (b"not json", b"[]", b'{"instance": "r1", "transform": {"set_headers": [1]}}'):
        with pytest.raises(ReplayError):
            parse_json(bad)


def test_headers_for_the_replayed_and_the_failed_request():
    assert src_header("r1", "ams", 123, "s") == "instance=r1;region=ams;t=123;state=s"
    assert src_header("r1", None, 5, None) == "instance=r1;region=;t=5"
    replay = parse_header("instance=r2;timeout=500ms;fallback=force_self")
    assert failed_header(replay, "r1", "timeout", 512) == \
        "instance=r2;replay_source=r1;reason=timeout;elapsed_ms=512"
    assert apply_transform("/a", {"H": "1"}, Transform()) == ("/a", {"H": "1"})


BACKENDS = [Backend("r1", "ams"), Backend("r2", "ams", inflight=3), Backend("r3", "lhr"),
            Backend("r4", "sjc", healthy=False)]


def test_choose_target():
    rng = random.Random(0)
    assert choose_target(parse_header("instance=r2"), BACKENDS, "r1", 25, rng)[0] == "r2"
    assert choose_target(parse_header("instance=r4"), BACKENDS, "r1", 25, rng) == \
        (None, {}, "no_candidate")
    target, extra, _ = choose_target(parse_header("prefer_instance=r4"), BACKENDS, "r1", 25,
                                     rng)
    assert target in ("r1", "r3") and extra == {"fly-preferred-instance-unavailable": "r4"}
    # regions in order of preference; the least loaded within the first region that has one
    assert choose_target(parse_header('region="sjc,ams"'), BACKENDS, "r3", 25, rng)[0] == "r1"
    assert choose_target(parse_header('region="sjc,any"'), BACKENDS, "r3", 25, rng)[0] \
        in ("r1", "r3")
    elsewhere = {choose_target(parse_header("elsewhere=true"), BACKENDS, "r1", 25, rng)[0]
                 for _ in range(30)}
    assert "r1" not in elsewhere and elsewhere <= {"r2", "r3"}
    assert choose_target(parse_header("instance=r2"), BACKENDS, "r1", 3, rng)[0] is None
