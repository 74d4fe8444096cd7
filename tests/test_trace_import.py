"""Importers on real logs written by the harness's own runs (committed samples, and fresh
ones from a live cluster), HAR entries, malformed input, and the session linking."""

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.trace import read_trace
from harness.trace.format import TraceRecord
from harness.trace.importers import ImportOptions, ImportStats, import_records, import_to_file
from harness.trace.importers.haproxy import HAProxyLineParser
from harness.trace.importers.nginx import NginxLineParser, compile_format
from harness.trace.schema import schema_errors
from harness.trace.session_key import parse_rule
from harness.trace.sessions import link_first_requests, number_sessions

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "fixtures/traces/samples"


def imported(fmt: str, path: Path, redact: bool = False, **options) -> tuple[list, ImportStats]:
    from harness.trace.importers import DEFAULT_POLICY

    stats = ImportStats()
    records = list(import_records(fmt, path, ImportOptions(**options), stats,
                                  DEFAULT_POLICY if redact else None))
    return records, stats


def by_session(records: list[TraceRecord]) -> dict[str, list[TraceRecord]]:
    sessions = defaultdict(list)
    for r in records:
        sessions[r.session].append(r)
    return dict(sessions)


def test_haproxy_sample_from_a_real_run():
    records, stats = imported("haproxy", SAMPLES / "haproxy-access.log")
    lines = [x for x in (SAMPLES / "haproxy-access.log").read_text().splitlines() if x.strip()]
    assert (stats.records, stats.skipped, stats.units) == (13, 5, len(lines))
    assert [line for line, _ in stats.examples] == [1, 2, 16, 17, 18]  # notices, BADREQ, DOWN
    sessions = by_session(records)
    cookie_sessions = [s for s in sessions if s.startswith("cookie:sid=")]
    assert len(cookie_sessions) == 4
    for key in cookie_sessions:
        reqs = sessions[key]
        # The first request (no cookie yet) was linked to the session its response began.
        assert [(r.method, r.seq) for r in reqs] == [("POST", 0), ("GET", 1), ("POST", 2)]
        assert "sid" not in reqs[0].cookies_sent and reqs[1].cookies_sent["sid"] in key
        assert len({r.replica for r in reqs}) == 1  # cookie-insert kept each on one server
        assert reqs[1].cookies_sent["SRVID"] == reqs[0].replica
    assert sessions["ip:127.0.0.1"][0].path == "/healthz"
    assert all(r.status == 200 and r.client_ip == "127.0.0.1" for r in records)
    assert records[1].t - records[0].t == pytest.approx(0.004, abs=1e-6)


def test_nginx_sample_from_a_real_run():
    records, stats = imported("nginx", SAMPLES / "nginx-access.log")
    assert (stats.records, stats.skipped) == (13, 1)
    assert "NOT HTTP AT ALL" in stats.examples[0][1]
    sessions = by_session(records)
    clients = {key: {r.client_ip for r in reqs} for key, reqs in sessions.items()
               if key.startswith("cookie:")}
    assert sorted(c for ips in clients.values() for c in ips) == [
        "192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"]
    for key, ips in clients.items():
        assert len(sessions[key]) == 3 and len(ips) == 1
        # cookie-hash: every request that carried the cookie went to one upstream.
        assert len({r.replica for r in sessions[key] if r.cookies_sent}) == 1
    assert all(r.replica.startswith("127.") for r in records)


def test_har_of_a_real_chromium_session(tmp_path):
    records, stats = imported("har", SAMPLES / "chromium-haproxy.har")
    assert (stats.records, stats.skipped) == (12, 0)
    sessions = by_session(records)
    assert len(sessions) == 3
    for reqs in sessions.values():
        # The page load carried no sid; its client label links it to the session that the
        # first POST's response began.
        assert [(r.method, r.path.split("?")[0], r.seq) for r in reqs] == [
            ("GET", "/", 0), ("POST", "/cart", 1), ("POST", "/cart", 2), ("GET", "/cart", 3)]
        assert len({r.client_ip for r in reqs}) == len({r.replica for r in reqs}) == 1
        assert reqs[1].cookies_sent["SRVID"] == reqs[0].replica  # HAProxy's inserted cookie
        assert "user-agent" in reqs[0].headers_sent and reqs[0].host.startswith("127.")
    out = tmp_path / "chromium.jsonl"
    import_to_file("har", SAMPLES / "chromium-haproxy.har", out, ImportOptions())
    assert "api_key=REDACTED" in out.read_text() and "k-0" not in out.read_text()


def test_redaction_on_import_by_default(tmp_path):
    out = tmp_path / "t.jsonl"
    header, _ = import_to_file("nginx", SAMPLES / "nginx-access.log", out, ImportOptions())
    text = out.read_text()
    assert header.redacted and "s3cret" not in text
    assert "sid=" not in text.split("\n", 1)[1]  # the app session cookie's value is gone
    assert "token=REDACTED" in text
    reader = read_trace(out)
    records = list(reader)
    assert reader.header.start == header.start and records[0].t == 0.0
    assert len(by_session(records)) == 5  # still grouped: hashed keys
    for line in text.splitlines()[1:]:
        assert schema_errors(json.loads(line), header=False) == []


@pytest.mark.parametrize("fmt, line, words", [
    ("haproxy", "127.0.0.1:1 [25/Nov/2026:15:25:40.328] fe be/r1 0/0 200", "option httplog"),
    ("haproxy", "hello world", "not an HAProxy log line"),
    ("haproxy", '127.0.0.1:1 [31/Foo/2026:15:25:40.328] fe be/r1 0/0/0/0/0 200 1 - - ---- '
                '1/1/0/0/0 0/0 "GET / HTTP/1.1"', "bad accept date"),
    ("nginx", "127.0.0.1 - [yesterday] \"GET / HTTP/1.1\" 200 upstream=- cookie=\"-\" xff=\"-\"",
     "bad time"),
    ("nginx", "just garbage", "does not match the log_format"),
])
def test_garbage_lines_are_errors_with_their_line(tmp_path, fmt, line, words):
    good = (SAMPLES / f"{fmt}-access.log").read_text().splitlines()[2]
    path = tmp_path / "log"
    path.write_text(f"{good}\n{good}\n{line}\n{good}\n")
    with pytest.raises(InputError) as info:
        imported(fmt, path)
    assert (info.value.file, info.value.line) == (str(path), 3)
    assert words in info.value.message and "--skip-bad" in info.value.message
    records, stats = imported(fmt, path, skip_bad=True)
    assert (len(records), stats.skipped, stats.examples[0][0]) == (3, 1, 3)


def test_haproxy_syslog_prefix_captures_and_encoding():
    parse = HAProxyLineParser(request_headers=("Host", "Cookie", "X-Forwarded-For"))
    line = ("<134>Feb  6 12:14:14 lb1 haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655]"
            " http-in static/srv1 10/0/30/69/109 200 2750 SRVID=s1 - ---- 1/1/1/1/0 0/0 "
            "{www.example.com|sid=a#7Cb; x=1|198.51.100.7} {} \"GET /a#22b?q=1 HTTP/1.1\"")
    req = parse(line)
    assert (req.host, req.path, req.replica) == ("www.example.com", '/a"b?q=1', "srv1")
    assert req.cookies == {"sid": "a|b", "x": "1", "SRVID": "s1"}
    assert req.headers == {"x-forwarded-for": "198.51.100.7"}
    assert req.time == 1233922454.655  # 2009-02-06T12:14:14.655Z
    shifted = HAProxyLineParser(("Host", "Cookie", "X-Forwarded-For"), utc_offset=3600)
    assert shifted(line).time == 1233922454.655 - 3600


def test_nginx_formats():
    pattern, names = compile_format('$remote_addr [$time_local] "$request" $status')
    assert names == ["remote_addr", "time_local", "request", "status"]
    assert pattern.match('1.2.3.4 [25/Nov/2026:15:25:41 +0100] "GET / HTTP/1.1" 200')
    combined = NginxLineParser("combined")(
        '192.0.2.5 - - [25/Nov/2026:15:25:41 +0100] "GET /x HTTP/1.1" 304 0 "-" "curl/8"')
    assert combined.time == 1795616741.0 and combined.client_ip == "192.0.2.5"
    assert combined.headers == {"user-agent": "curl/8"} and combined.status == 304
    escaped = NginxLineParser()(
        '127.0.0.1 - [2026-11-25T15:25:41+00:00] "GET /caf\\xC3\\xA9 HTTP/1.1" 502 '
        'upstream=127.0.0.2:1, 127.0.0.3:2 cookie="a=\\x22b\\x22" xff="203.0.113.9, 10.0.0.1"')
    assert escaped.path == "/café" and escaped.replica == "127.0.0.3:2"
    assert escaped.cookies == {"a": "b"} and escaped.client_ip == "203.0.113.9"
    for bad in ("$status only", '"$request"'):
        with pytest.raises(InputError):
            compile_format(bad)


def har(tmp_path: Path, entries, name="t.har") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "t"},
                                        "entries": entries}}, indent=1))
    return path


def entry(url="http://127.0.0.1:8080/cart", method="GET", when="2026-11-25T15:00:00.000Z",
          headers=(), status=200, response_headers=(), **extra):
    return {"startedDateTime": when, "request": {
        "method": method, "url": url, "httpVersion": "HTTP/1.1",
        "headers": [{"name": n, "value": v} for n, v in headers], "cookies": [], **extra},
        "response": {"status": status, "headers": [{"name": n, "value": v}
                                                   for n, v in response_headers]}}


def test_har_entries(tmp_path):
    path = har(tmp_path, [
        entry(method="POST", headers=[("X-Forwarded-For", "198.51.100.4"),
                                      (":authority", "shop.test"), ("Content-Length", "9")],
              response_headers=[("Set-Cookie", "sid=abc; Path=/"), ("X-Replica", "r2")],
              postData={"mimeType": "text/plain", "text": "item=tea"}),
        entry(when="2026-11-25T15:00:00.250+00:00", headers=[("Cookie", "sid=abc; SRVID=r2")],
              url="http://127.0.0.1:8080/cart?x=1#frag", status=0),
        entry(url="data:image/png;base64,AAAA"),
        entry(method="PUT", postData={"mimeType": "application/octet-stream",
                                      "text": "/w==", "encoding": "base64"}),
    ])
    records, stats = imported("har", path)
    assert (stats.records, stats.skipped, stats.units) == (3, 1, 4)
    first, second, third = records
    assert first.session == second.session == "cookie:sid=abc"  # linked by Set-Cookie
    assert (first.client_ip, first.host, first.replica) == ("198.51.100.4", "shop.test", "r2")
    assert first.body == "item=tea" and first.body_size == 8 and len(first.body_sha256) == 64
    assert "content-length" not in first.headers_sent
    assert (second.path, second.status, second.t - first.t) == ("/cart?x=1", None, 0.25)
    assert third.body is None and third.body_size == 1  # binary: size and hash only


def test_broken_har_names_line_or_entry(tmp_path):
    path = har(tmp_path, [entry(), entry()])
    text = path.read_text()
    cut = tmp_path / "cut.har"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(InputError) as info:
        imported("har", cut)
    assert info.value.line == text[: len(text) // 2].count("\n") + 1
    broken = tmp_path / "broken.har"
    lines = text.splitlines()
    number = next(i for i, line in enumerate(lines) if '"method"' in line)
    lines[number] = lines[number].replace(":", " ", 1)
    broken.write_text("\n".join(lines))
    with pytest.raises(InputError) as info:
        imported("har", broken)
    assert info.value.line == number + 1
    with pytest.raises(InputError) as info:
        imported("har", har(tmp_path, [entry(), {"request": {"method": "GET"}}]))
    assert info.value.key == "log.entries[1]" and "request.url" in info.value.message
    records, stats = imported("har", har(tmp_path, [entry(), {"x": 1}]), skip_bad=True)
    assert (len(records), stats.skipped) == (1, 1)
    not_har = tmp_path / "x.json"
    not_har.write_text('{"entries": []}')
    with pytest.raises(InputError, match="no log.entries"):
        imported("har", not_har)


def rec(t, session, client="192.0.2.1"):
    return TraceRecord(t=t, session=session, method="GET", path="/", client_ip=client)


def test_linking_first_requests():
    records = [rec(0, "ip:192.0.2.1"), rec(0.1, "ip:192.0.2.2"), rec(0.2, "ip:192.0.2.1"),
               rec(0.3, "cookie:sid=a"), rec(0.4, "cookie:sid=a"),
               rec(0.5, "ip:192.0.2.1"), rec(0.6, "cookie:sid=a"),  # not a new cookie
               rec(40, "cookie:sid=b", "192.0.2.2")]  # too late for the 0.1 request
    linked = list(number_sessions(link_first_requests(records, window=30)))
    assert [r.t for r in linked] == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 40]  # order kept
    assert [r.session for r in linked] == [
        "ip:192.0.2.1", "ip:192.0.2.2", "cookie:sid=a", "cookie:sid=a", "cookie:sid=a",
        "ip:192.0.2.1", "cookie:sid=a", "cookie:sid=b"]
    assert [r.seq for r in linked] == [0, 0, 0, 1, 2, 1, 3, 0]
    unlinked = list(link_first_requests([rec(0, "ip:192.0.2.1"), rec(1, "cookie:sid=z")], 0))
    assert unlinked[0].session == "ip:192.0.2.1"


def test_session_key_rules():
    cookies, headers = {"SRVID": "r1", "JSESSIONID": "j"}, {"x-user": "u7"}
    assert parse_rule("auto").key(cookies=cookies, headers=headers, client_ip="a") == \
        "cookie:JSESSIONID=j"
    assert parse_rule("cookie:SRVID").key(cookies=cookies, headers={}, client_ip="a") == \
        "cookie:SRVID=r1"
    assert parse_rule("header:X-User").key(cookies={}, headers=headers, client_ip="a") == \
        "header:x-user=u7"
    assert parse_rule("ip").key(cookies=cookies, headers={}, client_ip="192.0.2.9") == \
        "ip:192.0.2.9"
    assert parse_rule("cookie:sid").key(cookies={}, headers={}, client_ip=None,
                                        set_cookies=["sid=new; Path=/"]) == "cookie:sid=new"
    for bad in ("cookies:sid", "cookie:", "header", "ip:1"):
        with pytest.raises(InputError) as info:
            parse_rule(bad)
        assert info.value.key == "--session-key"


def test_session_key_option_and_no_redaction(tmp_path):
    records, _ = imported("haproxy", SAMPLES / "haproxy-access.log",
                          session_key=parse_rule("ip"))
    assert Counter(r.session for r in records) == {"ip:127.0.0.1": 13}
    assert "s3cret" in records[1].path  # not redacted when asked not to


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["haproxy", "nginx"])
def test_logs_of_a_live_run_import_as_sent(tmp_path, kind):
    from tests.trace_logs import REQUESTS_PER_SESSION, SESSIONS, record_log

    log, sent = record_log(kind)
    path = tmp_path / f"{kind}.log"
    path.write_text(log)
    records, stats = imported(kind, path)
    cart = [r for r in records if r.path != "/healthz"]
    assert len(cart) == len(sent) == SESSIONS * REQUESTS_PER_SESSION
    assert stats.skipped >= 1  # the request that was not HTTP
    assert [(r.method, r.path) for r in cart] == [(s["method"], s["path"]) for s in sent]
    sessions = by_session(cart)
    assert len(sessions) == SESSIONS
    for reqs, n in zip(sessions.values(), range(SESSIONS), strict=True):
        assert [r.seq for r in reqs] == list(range(REQUESTS_PER_SESSION))
        mine = [s for s in sent if s["session"] == n]
        if kind == "haproxy":  # the server name is the replica id the app reported
            assert [r.replica for r in reqs] == [s["replica"] for s in mine]
        else:  # NGINX logs addresses and gets the client from X-Forwarded-For
            assert {r.client_ip for r in reqs} == {mine[0]["client"]}


@pytest.mark.integration
def test_haproxy_httpslog_and_a_custom_log_format_as_haproxy_writes_them(tmp_path):
    """Real HAProxy lines: one frontend with `option httpslog`, one with a log-format of
    its own (GMT date, %HM %HU %HV, a captured Cookie as a sample, %Ts.%ms), one with
    `option httplog clf` (two captured headers, CLF style); each log imports with
    --log-format."""
    import shutil
    import subprocess
    import time as clock
    import urllib.request

    from harness.cli import main
    from harness.runtime.net import free_port
    from harness.trace.io import read_trace

    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    ports = free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1")
    custom = r"%ci:%cp\ [%trg]\ %HM\ %HU\ %HV\ %ST\ %b/%s\ %{+Q}[capture.req.hdr(0)]\ %Ts.%ms"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""global
    log stderr format raw local0
defaults
    mode http
    log global
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend tls-style
    bind 127.0.0.1:{ports[0]}
    option httpslog
    capture request header Host len 40
    http-request return status 200
frontend own
    bind 127.0.0.1:{ports[1]}
    log-format "{custom}"
    capture request header Cookie len 60
    http-request return status 201
frontend clf
    bind 127.0.0.1:{ports[2]}
    option httplog clf
    capture request header Referer len 40
    capture request header User-Agent len 40
    http-request return status 202
""")
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen([haproxy, "-f", str(cfg), "-db"], stderr=err)
    try:
        for port, headers in ((ports[0], {}), (ports[1], {"Cookie": "sid=abc; SRV=r1"}),
                              (ports[2], {"User-Agent": "curl/8"})):
            deadline = clock.monotonic() + 10
            while True:
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/p?q=1",
                                                 headers=headers)
                    urllib.request.urlopen(req, timeout=2).read()
                    break
                except OSError:
                    assert clock.monotonic() < deadline, log.read_text()
                    clock.sleep(0.1)
        clock.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = log.read_text().splitlines()
    httpslog = [ln for ln in lines if " tls-style tls-style/" in ln]
    own = [ln for ln in lines if " own/<NOSRV> " in ln]
    clf = [ln for ln in lines if '"clf"' in ln]
    assert len(httpslog) == 1 and len(own) == 1 and len(clf) == 1, lines
    for name, line, argv in (("https", httpslog[0], ["--log-format", "httpslog",
                                                      "--capture", "Host"]),
                             ("own", own[0], ["--log-format", custom, "--capture", "Cookie"]),
                             ("clf", clf[0], ["--log-format", "httplog-clf", "--capture",
                                              "Referer,User-Agent"])):
        source, out = tmp_path / f"{name}.log", tmp_path / f"{name}.jsonl"
        source.write_text(line + "\n")
        assert main(["trace", "import", "haproxy", str(source), "-o", str(out), "--no-redact",
                     *argv]) == 0, line
        with read_trace(out) as reader:
            (record,) = list(reader)
        assert (record.method, record.path, record.client_ip) == ("GET", "/p?q=1", "127.0.0.1")
        if name == "https":
            assert record.status == 200 and record.host == f"127.0.0.1:{ports[0]}"
        elif name == "clf":
            assert record.status == 202 and record.headers_sent == {"user-agent": "curl/8"}
            assert record.set_cookies == []
        else:
            assert record.status == 201 and record.cookies_sent == {"sid": "abc", "SRV": "r1"}
            assert abs(reader.header.start - clock.time()) < 60  # %Ts.%ms, in UTC


def test_haproxy_log_format_compiler_reads_the_documented_httpslog_line():
    from harness.errors import InputError
    from harness.trace.importers.haproxy import HAProxyLineParser

    # configuration.txt 8.2.4's example, HAProxy 2.6
    line = ("Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655]"
            " https-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "
            '"GET /index.html HTTP/1.1" 0/0/0/0/0 1wt.eu/TLSv1.3/TLS_AES_256_GCM_SHA384')
    req = HAProxyLineParser(("Host",), log_format="httpslog")(line)
    assert (req.host, req.path, req.replica, req.status) == ("1wt.eu", "/index.html", "srv1",
                                                             200)
    assert req.time == 1233922454.655
    # %o flags every string after it (dates and numbers stay bare); `\ ` is a space, `%%`
    # a percent sign. The line is as HAProxy 2.6.12 wrote it for this format.
    quoted = HAProxyLineParser(log_format=r'"%{+Q}o\ %ci\ 100%%\ [%t]\ %r\ %ST\ %b"')
    req = quoted('"127.0.0.1" 100% [08/Dec/2026:03:04:19.504] "GET /x HTTP/1.1" 200 "q"')
    assert (req.client_ip, req.path, req.status) == ("127.0.0.1", "/x", 200)
    for bad, why in (("%ci [%t] %ST", "no request"), ("%ci %r", "no time")):
        with pytest.raises(InputError, match=why):
            HAProxyLineParser(log_format=bad)


def test_haproxy_accept_date_takes_the_zone_of_an_iso_syslog_timestamp():
    """rsyslog's RFC 5424 / ISO 8601 prefix names the zone that HAProxy's accept date
    lacks; --utc-offset, when given, wins."""
    from harness.trace.importers.haproxy import HAProxyLineParser

    body = ('10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 '
            '200 2750 - - ---- 1/1/1/1/0 0/0 "GET /index.html HTTP/1.1"')
    utc = HAProxyLineParser()(body).time
    assert HAProxyLineParser()(f"2009-02-06T12:14:14.700+01:00 lb1 haproxy[14389]: {body}"
                               ).time == utc - 3600
    assert HAProxyLineParser()(f"2009-02-06T12:14:14Z lb1 haproxy[14389]: {body}").time == utc
    assert HAProxyLineParser(utc_offset=-8 * 3600)(
        f"2009-02-06T12:14:14.700+01:00 lb1 haproxy[14389]: {body}").time == utc + 8 * 3600


def test_nginx_formats_as_people_write_them():
    """An unquoted $request (its spaces kept), and an escape=json format with bare numbers
    (`"status":$status`), read by key whatever the order in the line."""
    from harness.trace.importers.nginx import NginxLineParser

    unquoted = NginxLineParser('$remote_addr - $remote_user [$time_local] $request "$status"')
    req = unquoted('192.0.2.4 - - [25/Nov/2026:15:25:41 +0100] GET /dist/ HTTP/1.1 "200"')
    assert (req.method, req.path, req.status) == ("GET", "/dist/", 200)
    as_json = NginxLineParser('escape=json {"addr":"$remote_addr","t":"$time_local",'
                              '"request":"$request","status":$status}')
    req = as_json('{"status":404,"request":"GET /x HTTP/1.1","t":"25/Nov/2026:15:25:41 +0100",'
                  '"addr":"192.0.2.5"}')
    assert (req.client_ip, req.path, req.status) == ("192.0.2.5", "/x", 404)
