"""Replay caching (fly-citations.md section 8): pure cache, fake clock, model-checked."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.proxy.replay_cache import (
    Lookup,
    ReplayCache,
    SessionRule,
    parse_pattern,
    prefix_matches,
    validate_cacheable,
)

H = "a.test"
SKIP = {"fly-replay-cache-control": "skip"}


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def cache(*rules):
    clock = Clock()
    return ReplayCache(rules, clock=clock), clock


def sid(value):
    return {"sid": value}


API = SessionRule("/api", 30, "cookie", "sid")


# ---- patterns -----------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["/api", "/api/", "/api/*"])
def test_pattern_forms_are_equivalent(pattern):
    assert parse_pattern(pattern) == (None, "/api")


def test_pattern_with_host():
    assert parse_pattern("Example.com/api/*") == ("example.com", "/api")
    assert parse_pattern("example.com") == ("example.com", "")
    assert parse_pattern("/*") == (None, "")


@pytest.mark.parametrize("pattern", ["", "example.com:80/api", "https://example.com/api",
                                     "/api*", "/a/*/b"])
def test_bad_patterns(pattern):
    with pytest.raises(ValueError):
        parse_pattern(pattern)


@pytest.mark.parametrize(("path", "matches"), [("/api", True), ("/api/", True),
                                               ("/api/x/y", True), ("/apix", False),
                                               ("/", False), ("/ap", False)])
def test_prefix_is_implicit_slash_star(path, matches):
    assert prefix_matches("/api", path) is matches


def test_root_prefix_matches_everything():
    assert prefix_matches("", "/") and prefix_matches("", "/anything/at/all")


# ---- session rules ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(ttl_seconds=9), dict(type="query"), dict(name=""),
                                    dict(path_prefix="example.com:443/api")])
def test_session_rule_validation(kwargs):
    args = dict(path_prefix="/api", ttl_seconds=10, type="cookie", name="sid") | kwargs
    with pytest.raises(ValueError):
        SessionRule(**args)


def test_duplicate_rules_rejected():
    with pytest.raises(ValueError):
        ReplayCache([SessionRule("/api", 10, "cookie", "a"),
                     SessionRule("/api/*", 20, "header", "b")])


def test_session_hit_within_ttl_and_miss_after():
    c, clock = cache(API)
    assert c.lookup(H, "/api/x", sid("u1"), {}) == Lookup(None, None)
    assert c.store_session(H, "/api/x", sid("u1"), {}, "r2")
    clock.advance(29.9)
    assert c.lookup(H, "/api/other", sid("u1"), {}) == Lookup("r2", "hit")
    assert len(c) == 1
    clock.advance(0.1)  # exactly ttl old: expired
    assert len(c) == 0
    assert c.lookup(H, "/api/x", sid("u1"), {}) == Lookup(None, None)


def test_expired_entry_is_removed_and_restorable():
    c, clock = cache(API)
    c.store_session(H, "/api", sid("u1"), {}, "r1")
    clock.advance(31)
    assert c.lookup(H, "/api", sid("u1"), {}).target is None
    assert c._sessions == {}
    c.store_session(H, "/api", sid("u1"), {}, "r3")
    assert c.lookup(H, "/api", sid("u1"), {}) == Lookup("r3", "hit")


def test_session_keys_are_separate():
    c, _ = cache(API)
    c.store_session(H, "/api", sid("u1"), {}, "r1")
    c.store_session(H, "/api", sid("u2"), {}, "r2")
    assert c.lookup(H, "/api", sid("u1"), {}).target == "r1"
    assert c.lookup(H, "/api", sid("u2"), {}).target == "r2"
    assert c.lookup(H, "/api", sid("u3"), {}).target is None
    assert c.lookup(H, "/api", {}, {}).target is None


def test_session_key_from_header():
    c, _ = cache(SessionRule("/", 10, "header", "X-User"))
    assert c.store_session(H, "/p", {}, {"x-user": "alice"}, "r1")
    assert c.lookup(H, "/q", {}, {"x-user": "alice"}) == Lookup("r1", "hit")
    assert c.lookup(H, "/q", {"X-User": "alice"}, {}).target is None  # a cookie is not a header


def test_session_key_from_cookie_not_header():
    c, _ = cache(API)
    assert not c.store_session(H, "/api", {}, {"sid": "u1"}, "r1")


@pytest.mark.parametrize(("cookies", "path"), [({}, "/api"), ({"sid": ""}, "/api"),
                                               ({"other": "x"}, "/api"), (sid("u1"), "/apix"),
                                               (sid("u1"), "/")])
def test_no_key_or_no_rule_stores_nothing(cookies, path):
    c, _ = cache(API)
    assert c.store_session(H, path, cookies, {}, "r1") is False
    assert len(c) == 0


def test_longest_prefix_wins():
    short = SessionRule("/api", 10, "cookie", "sid")
    long = SessionRule("/api/v2/", 60, "header", "x-user")
    c, clock = cache(short, long)
    assert c.rule_for(H, "/api/v2/items") == long
    assert c.rule_for(H, "/api/v1/items") == short
    assert c.rule_for(H, "/api/v2x") == short
    # Under /api/v2 only the longer rule applies: its header keys the cache, not the cookie.
    assert not c.store_session(H, "/api/v2/items", sid("u1"), {}, "r1")
    assert c.store_session(H, "/api/v2/items", sid("u1"), {"x-user": "a"}, "r2")
    assert c.store_session(H, "/api/v1", sid("u1"), {}, "r1")
    clock.advance(15)  # the /api entry (ttl 10) is gone, the /api/v2 one (ttl 60) is not
    assert c.lookup(H, "/api/v2/z", sid("u1"), {"x-user": "a"}) == Lookup("r2", "hit")
    assert c.lookup(H, "/api/v1", sid("u1"), {"x-user": "a"}).target is None


def test_rule_order_does_not_matter():
    a, b = SessionRule("/", 10, "cookie", "sid"), SessionRule("/x/y", 10, "cookie", "sid")
    assert ReplayCache([a, b]).rule_for(H, "/x/y/z") == ReplayCache([b, a]).rule_for(H, "/x/y/z")


def test_host_qualified_rule_applies_only_to_its_host():
    c, _ = cache(SessionRule("a.test/api", 10, "cookie", "sid"))
    assert c.store_session("a.test", "/api", sid("u1"), {}, "r1")
    assert not c.store_session("b.test", "/api", sid("u1"), {}, "r1")
    assert c.lookup("A.TEST", "/api", sid("u1"), {}).target == "r1"
    assert c.lookup("b.test", "/api", sid("u1"), {}).target is None


def test_host_qualified_rule_beats_any_host_rule_of_same_length():
    anyhost = SessionRule("/api", 10, "cookie", "sid")
    qualified = SessionRule("a.test/api", 10, "header", "x-user")
    c = ReplayCache([anyhost, qualified])
    assert c.rule_for("a.test", "/api/x") == qualified
    assert c.rule_for("b.test", "/api/x") == anyhost


def test_each_host_has_its_own_cache():
    c, _ = cache(API)
    c.store_session("a.test", "/api", sid("u1"), {}, "r1")
    assert c.lookup("b.test", "/api", sid("u1"), {}).target is None
    c.store_session("b.test", "/api", sid("u1"), {}, "r2")
    assert c.lookup("a.test", "/api", sid("u1"), {}).target == "r1"
    assert c.lookup("b.test", "/api", sid("u1"), {}).target == "r2"
    assert len(c) == 2


def test_query_string_is_not_part_of_the_path():
    c, _ = cache(API)
    c.store_session(H, "/api?x=1", sid("u1"), {}, "r1")
    assert c.lookup(H, "/api/z?q", sid("u1"), {}).target == "r1"


# ---- bypass -------------------------------------------------------------------------------

def test_session_bypass_allowed():
    c, _ = cache(SessionRule("/api", 10, "cookie", "sid", allow_bypass=True))
    c.store_session(H, "/api", sid("u1"), {}, "r1")
    assert c.lookup(H, "/api", sid("u1"), SKIP) == Lookup(None, "bypass")
    assert c.lookup(H, "/api", sid("u1"), {"fly-replay-cache-control": " Skip "}).status == \
        "bypass"
    assert c.lookup(H, "/api", sid("u1"), {}) == Lookup("r1", "hit")  # the entry is kept


def test_session_bypass_allowed_even_without_entry():
    c, _ = cache(SessionRule("/api", 10, "cookie", "sid", allow_bypass=True))
    assert c.lookup(H, "/api", sid("u1"), SKIP) == Lookup(None, "bypass")


def test_session_bypass_not_allowed_is_ignored():
    c, _ = cache(API)
    c.store_session(H, "/api", sid("u1"), {}, "r1")
    assert c.lookup(H, "/api", sid("u1"), SKIP) == Lookup("r1", "hit")


def test_other_cache_control_values_do_not_bypass():
    c, _ = cache(SessionRule("/api", 10, "cookie", "sid", allow_bypass=True))
    c.store_session(H, "/api", sid("u1"), {}, "r1")
    assert c.lookup(H, "/api", sid("u1"), {"fly-replay-cache-control": "no-cache"}).target == "r1"


def test_path_bypass():
    c, _ = cache()
    c.store_path(H, "/open/*", 10, "r1", allow_bypass=True)
    c.store_path(H, "/closed/*", 10, "r2")
    assert c.lookup(H, "/open/x", {}, SKIP) == Lookup(None, "bypass")
    assert c.lookup(H, "/closed/x", {}, SKIP) == Lookup("r2", "hit")
    assert c.lookup(H, "/nothing", {}, SKIP) == Lookup(None, None)


# ---- path-based ---------------------------------------------------------------------------

def test_path_hit_within_ttl_and_miss_after():
    c, clock = cache()
    c.store_path(H, "/some/path/*", 12, "r1", request_path="/some/path/here")
    assert c.lookup(H, "/some/path", {}, {}) == Lookup("r1", "hit")
    assert c.lookup(H, "/some/pathx", {}, {}) == Lookup(None, None)
    clock.advance(11.5)
    assert c.lookup(H, "/some/path/deeper/still", {}, {}).target == "r1"
    clock.advance(0.5)
    assert c.lookup(H, "/some/path", {}, {}) == Lookup(None, None)
    assert len(c) == 0 and c._paths[H] == {}


def test_path_longest_pattern_first_and_fallback_to_shorter():
    c, clock = cache()
    c.store_path(H, "/a", 100, "short")
    c.store_path(H, "/a/b/", 10, "long")
    assert c.lookup(H, "/a/b/c", {}, {}).target == "long"
    assert c.lookup(H, "/a/c", {}, {}).target == "short"
    clock.advance(10)
    assert c.lookup(H, "/a/b/c", {}, {}).target == "short"  # the expired longer entry is gone


def test_path_pattern_host_overrides_host_and_caches_are_per_host():
    c, _ = cache()
    c.store_path("a.test", "B.test/x", 10, "r1")
    assert c.lookup("b.test", "/x/1", {}, {}).target == "r1"
    assert c.lookup("a.test", "/x/1", {}, {}).target is None
    c.store_path("a.test", "/x", 10, "r2")
    assert c.lookup("a.test", "/x/1", {}, {}).target == "r2"
    assert c.lookup("b.test", "/x/1", {}, {}).target == "r1"


def test_session_entry_checked_before_path_entry():
    c, _ = cache(API)
    c.store_path(H, "/api/long/pattern", 10, "path")
    c.store_session(H, "/api", sid("u1"), {}, "session")
    assert c.lookup(H, "/api/long/pattern/x", sid("u1"), {}).target == "session"
    assert c.lookup(H, "/api/long/pattern/x", sid("u2"), {}).target == "path"


def test_session_bypass_skips_path_entries_too():
    c, _ = cache(SessionRule("/api", 10, "cookie", "sid", allow_bypass=True))
    c.store_path(H, "/api", 10, "path")
    assert c.lookup(H, "/api", sid("u1"), SKIP) == Lookup(None, "bypass")
    assert c.lookup(H, "/api", {}, SKIP) == Lookup("path", "hit")  # no session: path entry


def test_path_store_overwrites():
    c, _ = cache()
    c.store_path(H, "/x", 10, "r1")
    c.store_path(H, "/x/*", 10, "r2")
    assert c.lookup(H, "/x", {}, {}).target == "r2" and len(c) == 1


@pytest.mark.parametrize("kwargs", [
    dict(ttl_seconds=9),
    dict(ttl_seconds=0),
    dict(pattern="a.test:80/x/*"),
    dict(pattern="/y/*", request_path="/x/1"),
    dict(pattern="/x/*", request_path="/xy"),
    dict(pattern="b.test/x/*", request_path="/x/1"),  # another host: not the current request
    dict(instance=""),
])
def test_store_path_rejects(kwargs):
    c, _ = cache()
    args = dict(host=H, pattern="/x/*", ttl_seconds=10, instance="r1") | kwargs
    with pytest.raises(ValueError):
        c.store_path(**args)
    assert len(c) == 0


def test_store_path_accepts_matching_request():
    c, _ = cache()
    c.store_path(H, "a.test/x/*", 10, "r1", request_path="/x")
    c.store_path(H, "/", 10, "r2", request_path="/anything")
    assert len(c) == 2


# ---- invalidation -------------------------------------------------------------------------

def test_invalidate_session_and_path_entries():
    c, _ = cache(API)
    c.store_session(H, "/api", sid("u1"), {}, "r1")
    c.store_session(H, "/api", sid("u2"), {}, "r1")
    c.store_path(H, "/api", 10, "r1")
    c.store_path(H, "/api/v1", 10, "r1")
    c.store_path(H, "/other", 10, "r1")
    c.store_path("b.test", "/api", 10, "r1")
    assert c.invalidate(H, "/api/v1/x", sid("u1"), {}) == 3
    assert c.lookup(H, "/api/v1/x", sid("u1"), {}) == Lookup(None, None)
    assert c.lookup(H, "/api", sid("u2"), {}).target == "r1"  # another session
    assert c.lookup(H, "/other", {}, {}).target == "r1"
    assert c.lookup("b.test", "/api", {}, {}).target == "r1"  # another host
    assert len(c) == 3
    assert c.invalidate(H, "/api/v1/x", sid("u1"), {}) == 0


def test_invalidate_does_not_count_expired():
    c, clock = cache(API)
    c.store_session(H, "/api", sid("u1"), {}, "r1")
    c.store_path(H, "/api", 10, "r1")
    clock.advance(30)  # both expired (ttl 30 and 10)
    assert c.invalidate(H, "/api", sid("u1"), {}) == 0
    assert c._sessions == {} and c._paths[H] == {}


def test_expired_entries_are_swept_on_store():
    c, clock = cache(API)
    for i in range(50):
        c.store_session(H, "/api", sid(f"u{i}"), {}, "r1")
    clock.advance(31)
    c.store_session(H, "/api", sid("new"), {}, "r1")
    assert len(c._sessions) == 1


# ---- cacheability -------------------------------------------------------------------------

def test_validate_cacheable():
    assert validate_cacheable({"instance": "abc"}) == []
    assert validate_cacheable({"region": "iad,any", "elsewhere": "true"}) == []
    reasons = validate_cacheable({"instance": "abc", "state": "s", "transform_headers": "x",
                                  "Transform_path": "/y", "timeout": "1s",
                                  "fallback": "prefer_self"})
    assert len(reasons) == 4
    assert "state" in reasons[0]
    assert "transform_headers" in reasons[1] and "transform_path" in reasons[1]
    assert "timeout" in reasons[2] and "fallback" in reasons[3]


@pytest.mark.parametrize("field", ["state", "transform", "timeout", "fallback"])
def test_validate_cacheable_each_field(field):
    assert len(validate_cacheable({"instance": "abc", field: "v"})) == 1


# ---- model check --------------------------------------------------------------------------

RULES = [
    SessionRule("/api", 10, "cookie", "sid"),
    SessionRule("/api/v1", 25, "header", "x-user", allow_bypass=True),
    SessionRule("b.test/api", 15, "cookie", "sid"),
]
HOSTS = ["a.test", "b.test"]
PATHS = ["/", "/api", "/api/x", "/api/v1", "/api/v1/y", "/apix", "/other/z"]
PATTERNS = ["/", "/api", "/api/v1", "/other", "b.test/api"]


def model_rule(host, path):
    """The longest matching rule, written out naively."""
    best = None
    for rule in RULES:
        rhost, _, rest = rule.path_prefix.partition("/") if rule.path_prefix[0] != "/" \
            else ("", "", rule.path_prefix[1:])
        prefix = "/" + rest
        if rhost and rhost != host:
            continue
        if not (path == prefix or path.startswith(prefix + "/")):
            continue
        if best is None or (len(prefix), bool(rhost)) > best[0]:
            best = ((len(prefix), bool(rhost)), rule)
    return best and best[1]


def request(value):
    return ({"sid": value}, {"x-user": value}) if value else ({}, {})


ops = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([0, 0.5, 1, 5, 9.5, 10, 15, 25, 40])),
    st.tuples(st.just("session"), st.sampled_from(HOSTS), st.sampled_from(PATHS),
              st.sampled_from([None, "u1", "u2"]), st.sampled_from(["r1", "r2", "r3"])),
    st.tuples(st.just("path"), st.sampled_from(HOSTS), st.sampled_from(PATTERNS),
              st.sampled_from([10, 11, 30]), st.sampled_from(["p1", "p2"]), st.booleans()),
    st.tuples(st.just("lookup"), st.sampled_from(HOSTS), st.sampled_from(PATHS),
              st.sampled_from([None, "u1", "u2"]), st.booleans()),
    st.tuples(st.just("invalidate"), st.sampled_from(HOSTS), st.sampled_from(PATHS),
              st.sampled_from([None, "u1", "u2"])),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_model_never_serves_an_expired_entry(operations):
    clock = Clock(0.0)
    c = ReplayCache(RULES, clock=clock)
    sessions = {}  # (host, rule, value) -> (instance, stored_at, ttl)
    paths = {}  # (host, prefix) -> (instance, stored_at, ttl)

    def live(entry):
        return clock.now - entry[1] < entry[2]

    for op in operations:
        kind = op[0]
        if kind == "advance":
            clock.advance(op[1])
        elif kind == "session":
            _, host, path, value, instance = op
            rule = model_rule(host, path)
            stored = c.store_session(host, path, *request(value), instance)
            assert stored == bool(rule and value)
            if stored:
                sessions[(host, rule, value)] = (instance, clock.now, rule.ttl_seconds)
        elif kind == "path":
            _, host, pattern, ttl, instance, bypass = op
            c.store_path(host, pattern, ttl, instance, allow_bypass=bypass)
            phost, _, rest = pattern.partition("/") if pattern[0] != "/" else (host, "", pattern)
            prefix = pattern if pattern[0] == "/" else "/" + rest
            paths[(phost, prefix.rstrip("/"))] = (instance, clock.now, ttl, bypass)
        elif kind == "lookup":
            _, host, path, value, skip = op
            cookies, headers = request(value)
            if skip:
                headers = headers | {"fly-replay-cache-control": "skip"}
            got = c.lookup(host, path, cookies, headers)
            # The invariant: a target comes from an entry younger than its TTL.
            if got.target is not None:
                assert got.status == "hit"
                assert any(e[0] == got.target and live(e)
                           for e in [*sessions.values(), *paths.values()])
            # The full model.
            rule = model_rule(host, path)
            expected = Lookup(None, None)
            entry = sessions.get((host, rule, value)) if rule and value else None
            if rule and value and skip and rule.allow_bypass:
                expected = Lookup(None, "bypass")
            elif entry and live(entry):
                expected = Lookup(entry[0], "hit")
            else:
                matching = sorted(((p, e) for (h, p), e in paths.items() if h == host and live(e)
                                   and (path == p or path.startswith(p + "/"))),
                                  key=lambda pe: len(pe[0]), reverse=True)
                if matching:
                    instance, *_, bypass = matching[0][1]
                    expected = (Lookup(None, "bypass") if skip and bypass
                                else Lookup(instance, "hit"))
            assert got == expected
        else:
            _, host, path, value = op
            rule = model_rule(host, path)
            dropped = 0
            if rule and value:
                entry = sessions.pop((host, rule, value), None)
                dropped += bool(entry and live(entry))
            for key in [k for k in paths if k[0] == host
                        and (path == k[1] or path.startswith(k[1] + "/"))]:
                dropped += live(paths.pop(key))
            assert c.invalidate(host, path, *request(value)) == dropped
        assert len(c) == sum(map(live, [*sessions.values(), *paths.values()]))
