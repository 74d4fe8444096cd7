"""Regression: 'no session loses state' fails on mobile-users-ip-hash.jsonl, shrunk by
`stickler shrink` from fixtures/traces/shopping-day.jsonl (5000 requests) to 2 requests.
Found on nginx-ip-hash, fixed by haproxy-cookie-insert.

Rerun the shrink:
    stickler shrink fixtures/traces/shopping-day.jsonl --topology
    fixtures/topologies/nginx-ip-hash.yaml --fixed
    fixtures/topologies/haproxy-cookie-insert.yaml --property 'no session loses state'
    --name mobile-users-ip-hash
"""

from pathlib import Path

import pytest

from harness.trace.regression import ROOT, check

TRACE = Path(__file__).with_name("mobile-users-ip-hash.jsonl")
PROPERTY = 'no session loses state'


@pytest.fixture
def runtime():
    """processes; under suites/, --runtime chooses (suites/conftest.py parametrizes it)."""
    return "processes"


def test_the_failure_reproduces_on_nginx_ip_hash(runtime):
    holds, summary = check(TRACE, ROOT / 'fixtures/topologies/nginx-ip-hash.yaml',
                           PROPERTY, runtime=runtime)
    assert not holds, f"{PROPERTY} now holds on nginx-ip-hash: {summary}"


def test_the_property_holds_on_haproxy_cookie_insert(runtime):
    holds, summary = check(TRACE, ROOT / 'fixtures/topologies/haproxy-cookie-insert.yaml',
                           PROPERTY, runtime=runtime)
    assert holds, f"{PROPERTY} fails on haproxy-cookie-insert: {summary}"
