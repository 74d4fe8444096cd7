"""Profiles (pure): good files load, bad ones name the file, line and key; populations are
seeded, and their addresses are what address-hashing balancers should see."""

import ipaddress
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.errors import InputError
from harness.traffic.identity import prefix24
from harness.traffic.profile import (
    MOBILE_ADDRESSES,
    Profile,
    UserSpec,
    load_profile,
    parse_profile,
    population,
    session_length,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "fixtures" / "profiles").glob("*.yaml"))
CLIENTS = (ipaddress.ip_address("127.16.0.0"), ipaddress.ip_address("127.127.255.255"))
XFF_NETS = (ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("100.64.0.0/10"))


def in_client_range(ip: str) -> bool:
    return CLIENTS[0] <= ipaddress.ip_address(ip) <= CLIENTS[1]


def test_defaults(tmp_path):
    path = tmp_path / "quiet-day.yaml"
    path.write_text("users: 7\n")
    p = load_profile(path)
    assert p.name == "quiet-day" and p.users == 7 and p.spawn_rate == 10
    assert (p.session_length.min, p.session_length.alpha, p.session_length.max) == (3, 1.5, 60)
    assert (p.think_time_ms.min, p.think_time_ms.max) == (50, 500)
    assert p.nat.share == 0 and p.nat.group_size == 20 and p.mobile.switch_every == 5
    assert p.cdn.edges == 3 and p.hot.count == 0 and p.hot.multiplier == 100
    assert p.cookie_droppers == 0 and p.seed is None
    assert p.counts() == {"plain": 7, "nat": 0, "mobile": 0, "cdn": 0, "hot": 0, "dropper": 0}
    assert json.loads(json.dumps(p.to_dict()))["nat"] == {"share": 0.0, "group_size": 20}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_samples_load(path):
    p = load_profile(path)
    assert p.name == path.stem
    specs = population(p, 1)
    assert len(specs) == p.users
    assert Counter(s.kind for s in specs) == {k: n for k, n in p.counts().items() if n}


def test_sample_mixes():
    day = load_profile(ROOT / "fixtures/profiles/shopping-day.yaml").counts()
    assert day == {"plain": 119, "nat": 40, "mobile": 20, "cdn": 10, "hot": 1, "dropper": 10}
    nat = load_profile(ROOT / "fixtures/profiles/nat-heavy.yaml")
    assert nat.counts()["nat"] == 72 and nat.nat.group_size == 36
    assert load_profile(ROOT / "fixtures/profiles/mobile.yaml").counts()["mobile"] == 42
    assert load_profile(ROOT / "fixtures/profiles/hot-clients.yaml").counts()["hot"] == 3


@pytest.mark.parametrize("text, line, key, words", [
    ("users: 10\nnat:\n  share: 1.5\n", 3, "nat.share", ["at most 1"]),
    ("users: 10\ncolour: red\n", 2, "colour", ["unknown key", "users"]),
    ("users: -3\n", 1, "users", ["at least 1"]),
    ("users: true\n", 1, "users", ["expected an integer"]),
    ("users: 10\nnat: {sharre: 0.1}\n", 2, "nat.sharre", ["unknown key", "group_size"]),
    ("users: 10\nmobile: {share: 0.5, switch_every: 0}\n", 2, "mobile.switch_every",
     ["at least 1"]),
    ("session_length:\n  min: 5\n  max: 2\n", 3, "session_length.max", ["at least 5"]),
    ("think_time_ms:\n  min: 10\n  max: fast\n", 3, "think_time_ms.max", ["a number"]),
    ("spawn_rate: 0\n", 1, "spawn_rate", ["above 0"]),
    ("users: 10\nnat: {share: 0.6}\nmobile: {share: 0.6}\n", 1, "users", ["more users"]),
    ("users: 10\nhot: {count: 11}\n", 2, "hot.count", ["at most 10"]),
    ("users: 10\nseed: x\n", 2, "seed", ["integer"]),
    ("- users\n", 1, None, ["mapping"]),
])
def test_bad_values_name_line_and_key(text, line, key, words):
    with pytest.raises(InputError) as info:
        parse_profile(text, "bad.yaml")
    err = info.value
    assert (err.file, err.line, err.key) == ("bad.yaml", line, key), str(err)
    for word in words:
        assert word in err.message


def test_population_is_seeded():
    p = load_profile(ROOT / "fixtures/profiles/shopping-day.yaml")
    assert population(p, 1) == population(p, 1)
    assert population(p, 1) != population(p, 2)
    assert [s.kind for s in population(p, 1)] != [s.kind for s in population(p, 2)]


def test_addresses_nat_groups_and_distinct_clients():
    p = load_profile(ROOT / "fixtures/profiles/shopping-day.yaml")
    specs = population(p, 5)
    addresses = {ip for s in specs for ip in s.addresses}
    assert all(in_client_range(ip) for ip in addresses)
    # Every distinct client (user, NAT group, CDN edge, mobile address) has its own /24.
    assert len({prefix24(ip) for ip in addresses}) == len(addresses)
    nat = defaultdict(list)
    for s in specs:
        if s.kind == "nat":
            nat[s.addresses].append(s.id)
    assert sorted(len(users) for users in nat.values()) == [15, 25]
    assert all(len(s.addresses) == 1 for s in specs if s.kind != "mobile")
    plain = [s.addresses[0] for s in specs if s.kind in ("plain", "hot", "dropper")]
    assert len(set(plain)) == len(plain)


def test_nat_heavy_is_two_big_nats():
    specs = population(load_profile(ROOT / "fixtures/profiles/nat-heavy.yaml"), 3)
    groups = Counter(s.addresses for s in specs if s.kind == "nat")
    assert sorted(groups.values()) == [36, 36]


def test_mobile_users_rotate_through_distinct_prefixes():
    specs = population(load_profile(ROOT / "fixtures/profiles/mobile.yaml"), 3)
    mobile = [s for s in specs if s.kind == "mobile"]
    assert len(mobile) == 42
    for s in mobile:
        assert len(s.addresses) == MOBILE_ADDRESSES and s.switch_every == 4
        assert len({prefix24(ip) for ip in s.addresses}) == MOBILE_ADDRESSES
    assert all(s.switch_every == 0 for s in specs if s.kind != "mobile")


def test_cdn_users_come_through_edges_with_labels():
    p = load_profile(ROOT / "fixtures/profiles/shopping-day.yaml")
    specs = population(p, 5)
    cdn = [s for s in specs if s.kind == "cdn"]
    assert len({s.addresses for s in cdn}) == p.cdn.edges
    assert all(ipaddress.ip_address(s.xff) in XFF_NETS[0] for s in cdn)
    assert all(s.xff is None for s in specs if s.kind != "cdn")
    many = population(parse_profile("users: 600\ncdn: {share: 1.0, edges: 4}\n"), 1)
    labels = [ipaddress.ip_address(s.xff) for s in many]
    assert len(set(labels)) == 600
    assert all(any(ip in net for net in XFF_NETS) for ip in labels)
    assert any(ip in XFF_NETS[1] for ip in labels)


def test_hot_clients_and_droppers():
    p = parse_profile("users: 10\nthink_time_ms: {min: 100, max: 300}\n"
                      "hot: {count: 2, multiplier: 100}\ncookie_droppers: 0.3\n")
    specs = population(p, 1)
    assert [s.think_ms for s in specs if s.kind == "hot"] == [(1.0, 3.0)] * 2
    assert sum(not s.keep_cookies for s in specs) == 3
    assert all(s.keep_cookies == (s.kind != "dropper") for s in specs)
    assert all(s.think_ms == (100, 300) for s in specs if s.kind != "hot")


def test_shares_round_half_up():
    p = parse_profile("users: 10\nnat: {share: 0.25}\nmobile: {share: 0.15}\n"
                      "cdn: {share: 0.04}\n")
    assert p.counts() == {"plain": 5, "nat": 3, "mobile": 2, "cdn": 0, "hot": 0,
                          "dropper": 0}


def test_session_lengths_are_heavy_tailed_and_capped():
    spec = population(parse_profile("session_length: {min: 2, alpha: 1.2, max: 40}\n"),
                      1)[0]
    rng = random.Random(1)
    lengths = [session_length(rng, spec) for _ in range(5000)]
    assert min(lengths) == 2 and max(lengths) == 40
    assert Counter(lengths).most_common(1)[0][0] == 2
    assert sum(n >= 20 for n in lengths) > 50  # the tail is there


def test_spec_json_roundtrip():
    spec = population(load_profile(ROOT / "fixtures/profiles/smoke.yaml"), 4)[3]
    assert UserSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


share = st.sampled_from([0, 0.05, 0.1, 0.25, 0.5, 1.0])


@settings(max_examples=60, deadline=None)
@given(users=st.integers(1, 400), nat=share, mobile=share, cdn=share, droppers=share,
       group=st.integers(2, 50), edges=st.integers(1, 10), hot=st.integers(0, 5),
       seed=st.integers(0, 2**32))
def test_any_valid_profile_gives_one_spec_per_user(users, nat, mobile, cdn, droppers, group,
                                                   edges, hot, seed):
    text = yaml.safe_dump({"users": users, "nat": {"share": nat, "group_size": group},
                           "mobile": {"share": mobile}, "cdn": {"share": cdn, "edges": edges},
                           "hot": {"count": hot}, "cookie_droppers": droppers})
    try:
        p = parse_profile(text)
    except InputError as exc:
        assume(exc.key not in ("users", "hot.count"))  # more special users than users
        raise
    specs = population(p, seed)
    assert len(specs) == users
    assert len({s.id for s in specs}) == users
    assert isinstance(p, Profile)
    assert all(in_client_range(ip) for s in specs for ip in s.addresses)
