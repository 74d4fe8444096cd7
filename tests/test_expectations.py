"""Expectation files: every shipped behaviour is cited and well-formed; bad files name the
line; verdicts are pass, fail or unknown as the metrics say."""


import pytest

from harness.analysis.verdicts import FAIL, PASS, UNKNOWN, judge
from harness.balancers import ADAPTERS, option_default
from harness.errors import InputError
from harness.expectations import (
    EXPECTATIONS_DIR,
    expectations_for,
    load_expectations,
    parse_condition,
)
from harness.scenarios import SCENARIOS
from harness.topology import AppSettings


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_every_behaviour_is_cited(kind):
    behaviours = load_expectations(EXPECTATIONS_DIR / f"{kind}.yaml")
    assert behaviours
    for b in behaviours:
        assert b.id.startswith(f"{kind}.")
        assert len(b.citation["quote"].strip()) >= 20, b.id
        assert b.citation["document"].strip(), b.id
        if b.source in ("observed", "differs-from-docs", "folklore-refuted"):
            assert b.evidence, f"{b.id} departs from the docs or folklore but gives no evidence"


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_every_mode_has_expectations(kind):
    app_defaults = {f"app.{k}": v for k, v in AppSettings().__dict__.items()}
    health = {f"health_check.{k}": option_default(v)
              for k, v in ADAPTERS[kind].health_check_keys.items()}
    for mode, spec in ADAPTERS[kind].modes.items():
        options = {**spec.options, **health, **app_defaults}
        assert expectations_for(kind, mode, options), f"{kind} {mode} has no checks"


def test_when_filters_on_options():
    ids = {e.id for e in expectations_for("haproxy", "cookie-insert", {"indirect": False})}
    assert "haproxy.cookie-insert.direct-app-sees-cookie" in ids
    assert "haproxy.cookie-insert.indirect-hidden-from-app" not in ids


def test_when_filters_on_the_client_ip_transport():
    ids = {e.id for e in expectations_for("nginx", "ip-hash", {"client_ip": "source"})}
    assert "nginx.ip-hash.sticky-by-address" in ids
    assert "nginx.ip-hash.proxy-protocol-address" not in ids
    ids = {e.id for e in expectations_for("nginx", "ip-hash", {"client_ip": "proxy-protocol"})}
    assert "nginx.ip-hash.proxy-protocol-address" in ids


def test_condition_parsing():
    c = parse_condition("min_stickiness >= 0.99")
    assert (c.metric, c.op, c.value) == ("min_stickiness", ">=", 0.99)
    assert c.holds({"min_stickiness": 1.0}) and not c.holds({"min_stickiness": 0.5})
    with pytest.raises(ValueError, match="<metric> <op> <number>"):
        parse_condition("stickiness is high")


GOOD = """balancer: haproxy
behaviours:
  - id: x
    title: t
    modes: [roundrobin]
    scenario: cookie-sessions
    assert: [min_stickiness < 1]
    source: documented
    citation: {document: d, quote: q}
"""


@pytest.mark.parametrize("old, new, line, words", [
    ("modes: [roundrobin]", "modes: [round-robin]", 5, ["unknown haproxy mode"]),
    ("scenario: cookie-sessions", "scenario: shopping", 6, ["unknown scenario",
                                                            "cookie-sessions"]),
    ("[min_stickiness < 1]", "[stickiness < 1]", 7, ["has no metric 'stickiness'"]),
    ("[min_stickiness < 1]", "[min_stickiness about 1]", 7, ["<metric> <op> <number>"]),
    ("source: documented", "source: hearsay", 8, ["expected one of"]),
    ("citation: {document: d, quote: q}", "citation: {document: d}", 9, ["quote"]),
    ("    title: t\n", "    title: t\n    params: {sessoins: 3}\n", 5, ["unknown parameter"]),
    ("    title: t\n", "    title: t\n    when: {client_ip: pigeon}\n", 5,
     ["client_ip: source|proxy-protocol"]),
])
def test_bad_expectation_files_name_the_line(tmp_path, old, new, line, words):
    path = tmp_path / "haproxy.yaml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(InputError) as info:
        load_expectations(path)
    assert info.value.line == line, str(info.value)
    for word in words:
        assert word in str(info.value)


def test_good_file_loads(tmp_path):
    path = tmp_path / "haproxy.yaml"
    path.write_text(GOOD)
    (e,) = load_expectations(path)
    assert e.id == "haproxy.x" and e.line == 3 and e.scenario in SCENARIOS


def test_conditions_between_two_metrics():
    cond = parse_condition("status_503 == failed_requests")
    assert cond.value == "failed_requests" and str(cond) == "status_503 == failed_requests"
    assert cond.holds({"status_503": 4, "failed_requests": 4})
    v = judge((cond,), {"judged_requests": 9, "requests": 9, "errors": 0, "status_503": 2,
                        "failed_requests": 3}, 1)
    assert v.verdict == FAIL
    assert v.failed == ["status_503 == failed_requests (measured 2, failed_requests 3)"]


def test_condition_naming_an_unknown_metric_names_the_line(tmp_path):
    path = tmp_path / "haproxy.yaml"
    path.write_text(GOOD.replace("[min_stickiness < 1]", "[min_stickiness < stickyness]"))
    with pytest.raises(InputError) as info:
        load_expectations(path)
    assert info.value.line == 7 and "no metric 'stickyness'" in str(info.value)


def test_verdicts():
    conds = (parse_condition("min_stickiness == 1"), parse_condition("state_losses == 0"))
    good = {"judged_requests": 200, "requests": 200, "errors": 0, "min_stickiness": 1.0,
            "state_losses": 0}
    assert judge(conds, good, 100).verdict == PASS
    bad = {**good, "min_stickiness": 0.5}
    v = judge(conds, bad, 100)
    assert v.verdict == FAIL and v.failed == ["min_stickiness == 1 (measured 0.5)"]
    few = judge(conds, {**good, "judged_requests": 20}, 100)
    assert few.verdict == UNKNOWN and "only 20" in few.reason
    broken = judge(conds, {**good, "errors": 50}, 100)
    assert broken.verdict == UNKNOWN and "transport" in broken.reason
    spoofed = judge(conds, {**good, "client_ip_mismatches": 3}, 100)
    assert spoofed.verdict == UNKNOWN and "another address" in spoofed.reason
    # A runtime that cannot carry addresses at all (Caddy in containers): mismatches are
    # expected, session checks are judged, checks grouped by address cannot be.
    lost = {**good, "client_ip_mismatches": 200}
    assert judge(conds, lost, 100, addresses_carried=False).verdict == PASS
    assert judge(conds, {**lost, "min_stickiness": 0.5}, 100,
                 addresses_carried=False).verdict == FAIL
    by_address = judge(conds, lost, 100, addresses_carried=False, key="client_ip")
    assert by_address.verdict == UNKNOWN and "client_ip" in by_address.reason
    # A balancer that picks servers by the address (lb_policy ip_hash): no session check of
    # it can be judged either, whatever the checks group by; where addresses arrive, it can.
    keyed = judge(conds, lost, 100, addresses_carried=False, keyed_by_address=True)
    assert keyed.verdict == UNKNOWN and "every client looked alike" in keyed.reason
    assert judge(conds, good, 100, keyed_by_address=True).verdict == PASS


def test_runtimes_without_source_addresses_get_the_proxy_protocol_instead():
    from harness.runtime import RUNTIMES, carries_client_address, runnable
    from harness.suite import CheckLog, ClusterPool
    from harness.topology import parse_topology

    source = parse_topology("balancer: {kind: nginx, mode: ip-hash}\nreplicas: 2\n")
    labelled = parse_topology("balancer: {kind: nginx, mode: ip-hash, client_ip: xff}\n"
                              "replicas: 2\n")
    assert carries_client_address("processes", source)
    assert runnable(source, "processes") is source
    if "containers" in RUNTIMES:
        assert not carries_client_address("containers", source)
        assert carries_client_address("containers", labelled)
        assert runnable(source, "containers").client_ip == "proxy-protocol"
        assert runnable(labelled, "containers") is labelled
    pool = ClusterPool("processes", CheckLog(seed=1, runtime="processes"))
    carried = pool.with_proxy_protocol(source)
    assert carried.client_ip == "proxy-protocol" and carried.name == source.name
    assert pool.with_proxy_protocol(source) is carried  # one cluster for all its checks


def test_requirements_hold_for_any_mechanism_and_name_their_checks():
    from harness.expectations import requirements_for

    memory = {e.id for e in requirements_for({"app.session_store": "memory"})}
    shared = {e.id for e in requirements_for({"app.session_store": "redis"})}
    assert "requirement.sessions-kept" in memory & shared
    # A move costs nothing with a shared store: the scale-up requirement does not apply.
    assert memory - shared == {"requirement.scale-up-moves-only-to-new"}


def test_a_requirement_must_hold_for_any_mode(tmp_path):
    path = tmp_path / "requirements.yaml"
    path.write_text(GOOD.replace("balancer: haproxy", "balancer: any"))
    with pytest.raises(InputError) as info:
        load_expectations(path)
    assert "expected [any]" in str(info.value)
