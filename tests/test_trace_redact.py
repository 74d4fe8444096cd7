"""Redaction of imported traces (a pure function): secrets go, affinity cookies and the
grouping of sessions stay."""

from harness.trace.format import TraceRecord
from harness.trace.redact import REDACTED, RedactionPolicy, redact

POLICY = RedactionPolicy()


def record(**fields) -> TraceRecord:
    return TraceRecord(**{"t": 0.0, "session": "ip:192.0.2.1", "method": "GET",
                          "path": "/", **fields})


def test_headers_cookies_and_set_cookie():
    r = redact(record(headers_sent={"authorization": "Bearer x", "x-api-key": "k",
                                    "proxy-authorization": "Basic y", "accept": "*/*"},
                      cookies_sent={"SRVID": "r2", "sid": "s", "stickler-affinity": "a"},
                      set_cookies=["sid=new; Path=/; HttpOnly", "SRVID=r2; path=/", "bad"]),
               POLICY)
    assert r.headers_sent == {"authorization": REDACTED, "x-api-key": REDACTED,
                              "proxy-authorization": REDACTED, "accept": "*/*"}
    assert r.cookies_sent == {"SRVID": "r2", "sid": REDACTED, "stickler-affinity": "a"}
    assert r.set_cookies == ["sid=REDACTED; Path=/; HttpOnly", "SRVID=r2; path=/", "bad"]


def test_query_and_form_body():
    r = redact(record(path="/login?user=ann&access_token=abc&Password=p&next=/a%20b"), POLICY)
    assert r.path == "/login?user=ann&access_token=REDACTED&Password=REDACTED&next=/a%20b"
    untouched = "/search?q=a+b&page=2&x=%7E"
    assert redact(record(path=untouched), POLICY).path == untouched  # byte for byte
    form = redact(record(method="POST", body="user=ann&password=hunter2", body_size=25,
                         body_sha256="0" * 64,
                         headers_sent={"content-type": "application/x-www-form-urlencoded"}),
                  POLICY)
    assert form.body == "user=ann&password=REDACTED" and form.body_sha256 is None
    assert form.body_size == len(form.body)


def test_session_keys_stay_grouped_but_hide_values():
    a1 = redact(record(session="cookie:sid=secret-1"), POLICY).session
    a2 = redact(record(session="cookie:sid=secret-1"), POLICY).session
    b = redact(record(session="cookie:sid=secret-2"), POLICY).session
    assert a1 == a2 != b and a1.startswith("hash:") and "secret" not in a1
    assert redact(record(session="cookie:SRVID=r1"), POLICY).session == "cookie:SRVID=r1"
    assert redact(record(session="header:x-user=u1"), POLICY).session.startswith("hash:")
    assert redact(record(session="ip:192.0.2.1"), POLICY).session == "ip:192.0.2.1"


def test_policy_is_configurable():
    policy = RedactionPolicy(keep_cookies=frozenset({"sid"}), secret_names="^ssn$")
    r = redact(record(path="/?ssn=1&token=t", cookies_sent={"sid": "s", "SRVID": "r1"},
                      session="cookie:sid=s"), policy)
    assert (r.path, r.cookies_sent, r.session) == (
        "/?ssn=REDACTED&token=t", {"sid": "s", "SRVID": REDACTED}, "cookie:sid=s")
