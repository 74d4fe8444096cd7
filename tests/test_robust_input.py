"""Input no one here wrote, and outputs that are not what they seem: each test names a class
of input (an output that is a device, a directory or a link; a file that starts with a byte
order mark; a YAML key with no value; a number that is NaN, infinite or out of range), and
asserts a clear error with exit 2, nothing written, or the same result as the plain input."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.topology import parse_topology
from harness.traffic.profile import parse_profile
from tests.test_cli import ROOT, STICKLER

SAMPLES = ROOT / "fixtures" / "traces" / "samples"
HAPROXY_LOG = SAMPLES / "haproxy-access.log"
HAR = SAMPLES / "chromium-haproxy.har"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() and not p.is_symlink()
            else b"" for p in folder.rglob("*")}


@pytest.fixture(params=["character device", "directory", "FIFO", "symbolic link"])
def not_a_regular_file(request, tmp_path) -> Path:
    kind = request.param
    if kind == "character device":
        return Path("/dev/null")
    out = tmp_path / "out.jsonl"
    if kind == "directory":
        out.mkdir()
        (out / "keep").write_text("mine")
    elif kind == "FIFO":
        os.mkfifo(out)
    else:
        (tmp_path / "target.jsonl").write_text("mine")
        out.symlink_to(tmp_path / "target.jsonl")
    return out


@pytest.mark.parametrize("command", ["import", "record"])
def test_an_output_that_is_not_a_regular_file_is_never_replaced(command, not_a_regular_file,
                                                                tmp_path, capsys):
    before = tree(tmp_path)
    argv = (["trace", "import", "haproxy", str(HAPROXY_LOG)] if command == "import" else
            ["record", "--upstream", "127.0.0.1:9", "--duration", "1"])
    code, err = run(capsys, *argv, "-o", str(not_a_regular_file), "--force")
    assert code == 2, err
    assert "--output" in err and str(not_a_regular_file) in err
    assert "even with --force" in err or "symbolic link" in err
    assert tree(tmp_path) == before  # the link's target too: nothing changed, nothing left
    assert Path("/dev/null").is_char_device()


def test_an_output_folder_that_cannot_be_written_is_refused_before_reading(tmp_path, capsys):
    code, err = run(capsys, "trace", "import", "haproxy", str(HAPROXY_LOG),
                    "-o", "/proc/stickler-test/x.jsonl")
    assert code == 2 and "cannot write in /proc" in err, err
    assert not list(Path("/proc").glob(".stickler*"))


def test_an_existing_output_needs_force_and_the_input_is_never_the_output(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("mine")
    code, err = run(capsys, "trace", "import", "haproxy", str(HAPROXY_LOG), "-o", str(out))
    assert code == 2 and "use --force" in err and out.read_text() == "mine"
    copy = tmp_path / "access.log"
    copy.write_bytes(HAPROXY_LOG.read_bytes())
    code, err = run(capsys, "trace", "import", "haproxy", str(copy), "-o", str(copy), "--force")
    assert code == 2 and "is the input" in err
    assert copy.read_bytes() == HAPROXY_LOG.read_bytes()


def test_a_directory_given_as_input_is_named_as_one(tmp_path, capsys):
    code, err = run(capsys, "trace", "import", "har", str(tmp_path), "-o", str(tmp_path / "o"))
    assert code == 2 and "is a directory" in err, err


@pytest.mark.parametrize("fmt, sample", [("har", HAR), ("haproxy", HAPROXY_LOG)])
def test_an_input_with_a_utf8_byte_order_mark_imports_as_without(fmt, sample, tmp_path,
                                                                  capsys):
    with_bom = tmp_path / f"bom-{sample.name}"
    with_bom.write_bytes(b"\xef\xbb\xbf" + sample.read_bytes())
    plain, marked = tmp_path / "plain.jsonl", tmp_path / "marked.jsonl"
    assert run(capsys, "trace", "import", fmt, str(sample), "-o", str(plain))[0] == 0
    assert run(capsys, "trace", "import", fmt, str(with_bom), "-o", str(marked))[0] == 0
    strip = lambda p: [ln for ln in p.read_text().splitlines()[1:]]  # noqa: E731 (header: source)
    assert strip(plain) == strip(marked) and strip(plain)


@pytest.mark.parametrize("text, key", [
    ("name: t\nbalancer:\nreplicas: 2\n", "balancer"),
    ("name: t\nbalancer:\n  kind:\n  mode: roundrobin\nreplicas: 2\n", "kind"),
    ("name: t\nbalancer: {kind: haproxy, mode: roundrobin}\nreplicas:\n", "replicas"),
])
def test_a_yaml_key_with_no_value_is_an_error_naming_its_line(text, key):
    with pytest.raises(InputError) as caught:
        parse_topology(text, "t.yaml")
    assert caught.value.file == "t.yaml" and caught.value.line is not None
    assert key in str(caught.value)


def test_an_empty_optional_value_means_unset():
    topology = parse_topology("name:\nbalancer: {kind: haproxy, mode: roundrobin}\n"
                              "replicas: 2\n", "shop.yaml")
    assert topology.name == "shop"


@pytest.mark.parametrize("line, key", [("spawn_rate: .nan", "spawn_rate"),
                                       ("spawn_rate: .inf", "spawn_rate"),
                                       ("nat: {share: .nan}", "nat.share"),
                                       ("nat:", None)])
def test_a_profile_number_that_is_not_finite_is_an_error(line, key):
    text = f"name: p\nusers: 10\n{line}\n"
    if key is None:  # an empty section is the defaults
        assert parse_profile(text, "p.yaml").nat.share == 0
        return
    with pytest.raises(InputError, match="finite") as caught:
        parse_profile(text, "p.yaml")
    assert caught.value.key == key and caught.value.line == 3


@pytest.mark.parametrize("argv, flag", [
    (["trace", "import", "haproxy", str(HAPROXY_LOG), "--utc-offset", "nan"], "--utc-offset"),
    (["trace", "import", "haproxy", str(HAPROXY_LOG), "--utc-offset", "1000"], "--utc-offset"),
    (["trace", "import", "haproxy", str(HAPROXY_LOG), "--utc-offset", "+05:75"],
     "--utc-offset"),
    (["trace", "import", "haproxy", str(HAPROXY_LOG), "--link-window", "nan"], "--link-window"),
    (["trace", "import", "haproxy", str(HAPROXY_LOG), "--link-window", "-1"], "--link-window"),
    (["record", "--upstream", "127.0.0.1:9", "--duration", "inf"], "--duration"),
    (["load", "--topology", "t.yaml", "--profile", "p.yaml", "--duration", "inf"],
     "--duration"),
    (["load", "--topology", "t.yaml", "--profile", "p.yaml", "--duration", "0"], "--duration"),
])
def test_a_number_that_is_nan_infinite_or_out_of_range_is_refused(argv, flag, tmp_path,
                                                                 capsys):
    with pytest.raises(SystemExit) as caught:
        main([*argv, "-o" if argv[0] != "load" else "--report-dir", str(tmp_path / "o")])
    assert caught.value.code == 2
    assert flag in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("offset, hours", [("-08:00", -8), ("+05:30", 5.5), ("5.5", 5.5),
                                           ("-8", -8)])
def test_an_iso_8601_utc_offset_is_read_as_hours(offset, hours, tmp_path, capsys):
    from harness.trace.io import read_trace

    base, shifted = tmp_path / "utc.jsonl", tmp_path / "shifted.jsonl"
    assert run(capsys, "trace", "import", "haproxy", str(HAPROXY_LOG), "-o", str(base))[0] == 0
    # `=`: argparse takes a lone "-08:00" for an option
    assert run(capsys, "trace", "import", "haproxy", str(HAPROXY_LOG), "-o", str(shifted),
               f"--utc-offset={offset}")[0] == 0
    with read_trace(base) as a, read_trace(shifted) as b:  # local times: UTC = local - offset
        assert abs((a.header.start - b.header.start) - hours * 3600) < 1e-3
        assert [r.t for r in a] == [r.t for r in b]


def test_sigterm_while_a_config_is_read_leaves_no_temp_dir():
    """Reading a config runs the balancer's own check in a temp dir; a SIGTERM at any
    moment of it unwinds, and the dir goes."""
    import tempfile

    config = ROOT / "fixtures" / "configs" / "haproxy" / "acl-routing" / "haproxy.cfg"
    for delay in (0.3, 0.6, 0.9):
        proc = subprocess.Popen([str(STICKLER), "inspect", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        # -15: still starting Python, before Stickler made anything
        assert proc.returncode in (0, 143, -signal.SIGTERM)
        left = [p for p in Path(tempfile.gettempdir()).glob("stickler-haproxy-check-*")
                if (p / "stickler-owner.pid").exists()
                and (p / "stickler-owner.pid").read_text().strip() == str(proc.pid)]
        assert not left, left


def _trace_with(tmp_path: Path, **changes) -> Path:
    """The HAR sample imported, its first request changed as given."""
    import json

    imported = tmp_path / "imported.jsonl"
    assert main(["trace", "import", "har", str(HAR), "-o", str(imported)]) == 0
    header, first, *_ = imported.read_text().splitlines()
    record = json.loads(first)
    for key, value in changes.items():
        if isinstance(value, dict):
            record[key] = {**record.get(key, {}), **value}
        else:
            record[key] = value
    out = tmp_path / "changed.jsonl"
    out.write_text(f"{header}\n{json.dumps(record)}\n")
    return out


@pytest.mark.parametrize("changes, key", [
    ({"headers_sent": {"x-evil": "a\r\nInjected: 1"}}, "headers_sent"),
    ({"headers_sent": {"bad name": "x"}}, "headers_sent"),
    ({"cookies_sent": {"sid": "a;b"}}, "cookies_sent"),
    ({"path": "http://example.com/"}, "path"),
    ({"path": "/a b"}, "path"),
    ({"path": "/a\x00"}, "path"),
    ({"client_ip": "999.1.1.1"}, "client_ip"),
    ({"t": 1e308}, "t"),
    ({"host": "a\r\nb"}, "host"),
])
def test_a_record_that_cannot_be_sent_as_http_is_refused_by_check_and_replay(
        changes, key, tmp_path, capsys):
    """What `trace check` accepts, replay can send; what it cannot send, both refuse with
    the line and the key, and replay writes no report."""
    trace = _trace_with(tmp_path, **changes)
    code, err = run(capsys, "trace", "check", str(trace))
    assert code == 2 and f"{trace}:2" in err and key in err, err
    report = tmp_path / "report"
    code, err = run(capsys, "replay", str(trace), "--topology",
                    "fixtures/topologies/haproxy-roundrobin.yaml", "--report-dir", str(report))
    assert code == 2 and f"{trace}:2" in err, err
    assert not report.exists() and not list(tmp_path.glob(".report*"))


def test_a_session_with_a_seq_twice_is_refused_by_check(tmp_path, capsys):
    trace = _trace_with(tmp_path)
    lines = trace.read_text().splitlines()
    trace.write_text("\n".join([*lines, lines[1]]) + "\n")
    code, err = run(capsys, "trace", "check", str(trace))
    assert code == 2 and f"{trace}:3" in err and "twice" in err, err


def test_an_import_that_finds_no_request_writes_nothing_and_says_why(tmp_path, capsys):
    source = tmp_path / "junk.log"
    source.write_text("not a log line\nnor this\n")
    out = tmp_path / "out.jsonl"
    out.write_text("mine")
    code, err = run(capsys, "trace", "import", "haproxy", str(source), "-o", str(out),
                    "--skip-bad", "--force")
    assert code == 2 and "no requests imported" in err and "junk.log:1" in err, err
    assert out.read_text() == "mine"  # not replaced by an empty trace


def test_a_header_only_trace_is_not_ok(tmp_path, capsys):
    trace = _trace_with(tmp_path)
    trace.write_text(trace.read_text().splitlines()[0] + "\n")
    code, err = run(capsys, "trace", "check", str(trace))
    assert code == 1 and "no requests" in err


@pytest.mark.parametrize("speed", ["1e-300", "0", "-1", "nan"])
def test_a_replay_speed_too_slow_or_not_a_number_is_refused(speed, tmp_path, capsys):
    trace = _trace_with(tmp_path)
    code, err = run(capsys, "replay", str(trace), "--topology",
                    "fixtures/topologies/haproxy-roundrobin.yaml", "--speed", speed,
                    "--report-dir", str(tmp_path / "report"))
    assert code == 2 and "--speed" in err, err
    assert not (tmp_path / "report").exists()


@pytest.mark.integration
def test_a_replay_writes_its_report_folder_complete_or_not_at_all(tmp_path):
    """SIGTERM during a replay leaves no report folder (nor its hidden staging folder); a
    replay that ends leaves the whole one, its history where the report says."""
    import json

    slow = tmp_path / "slow.jsonl"
    assert main(["trace", "import", "har", str(HAR), "-o", str(slow)]) == 0
    report = tmp_path / "report"
    proc = subprocess.Popen([str(STICKLER), "replay", str(slow), "--topology",
                             "fixtures/topologies/haproxy-roundrobin.yaml", "--speed", "0.01",
                             "--report-dir", str(report)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(tmp_path.glob(".report.*")):
        time.sleep(0.1)
    time.sleep(1.0)  # the cluster up, requests going
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not report.exists() and not list(tmp_path.glob(".report*"))
    assert main(["replay", str(slow), "--topology", "fixtures/topologies/haproxy-roundrobin.yaml",
                 "--speed", "max", "--report-dir", str(report)]) in (0, 1)
    data = json.loads((report / "report.json").read_text())
    assert Path(data["history"]) == report / "history.jsonl" and Path(data["history"]).is_file()
    assert not list(tmp_path.glob(".report*"))


HAPROXY_REAL = """\
127.0.0.1:56254 [06/Feb/2009:12:14:14.655] fe-https/1: SSL handshake failure
Feb  6 12:14:14 lb1 haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] fe-https/1: \
Connection closed during SSL handshake
10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0
10.0.1.2:33312 [06/Feb/2009:12:12:51.443] http-in static/srv1 10/0/30/69/109 200 2750 - - \
---- 1/1/1/1/0 0/0 {example.com} "GET /index.html HTTP/1.1"
"""


def test_haproxy_lines_of_connections_without_a_request_are_skipped_saying_why(tmp_path,
                                                                               capsys):
    """A real log holds more than httplog lines: connection errors (an SSL handshake that
    failed) and TCP-mode lines carry no request, and are skipped, not an error."""
    log = tmp_path / "haproxy.log"
    log.write_text(HAPROXY_REAL)
    out = tmp_path / "out.jsonl"
    code = main(["trace", "import", "haproxy", str(log), "-o", str(out), "--capture", "Host"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "1 requests from 4 lines" in text and "SSL handshake failure" in text
    assert "TCP log line" in text


@pytest.mark.parametrize("capture, message", [
    (None, "which is no Cookie header"),  # the default Cookie reads the captured Host
    ("Cookie,User-Agent", "--capture names 2"),
])
def test_haproxy_captured_headers_that_do_not_match_capture_are_an_error(capture, message,
                                                                         tmp_path, capsys):
    log = tmp_path / "haproxy.log"
    log.write_text(HAPROXY_REAL)
    argv = ["trace", "import", "haproxy", str(log), "-o", str(tmp_path / "out.jsonl")]
    code, err = run(capsys, *argv, *(["--capture", capture] if capture else []))
    assert code == 2 and message in err and f"{log}:4" in err, err
    assert not (tmp_path / "out.jsonl").exists()


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`stickler ... | head`: a closed pipe is no traceback."""
    topologies = sorted(str(p) for p in (ROOT / "fixtures" / "topologies").glob("*.yaml"))
    proc = subprocess.Popen([str(STICKLER), "topology", "render", *topologies],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its lines
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGPIPE and "Traceback" not in err, err


@pytest.mark.parametrize("line, message", [
    ('192.0.2.5 - - [25/Nov/2026:15:25:41 +0100] "GET /x HTTP/1.1" abc 0 "-" "curl/8"',
     "$status: expected a status code"),
    ('192.0.2.5 - - [25/Nov/2026:15:25:41 +0100] "GET /x HTTP/1.1" 1234 0 "-" "curl/8"',
     "$status: expected a status code"),
    ('192.0.2.5 - - [25/Nov/2026:15:25:41 +0100] GET /x HTTP/1.1 304 0 "-" "curl/8"',
     "after $time_local (column 42): expected '] \"'"),
])
def test_an_nginx_line_that_is_off_says_which_field(line, message):
    from harness.trace.importers.base import Malformed
    from harness.trace.importers.nginx import NginxLineParser

    with pytest.raises(Malformed, match=re.escape(message)):
        NginxLineParser("combined")(line)


def test_an_nginx_remote_addr_chain_gives_its_first_address():
    from harness.trace.importers.nginx import NginxLineParser

    parsed = NginxLineParser("combined")('192.0.2.5, 10.0.0.1 - - [25/Nov/2026:15:25:41 +0100]'
                                         ' "GET /x HTTP/1.1" 304 0 "-" "curl/8"')
    assert parsed.client_ip == "192.0.2.5" and parsed.status == 304


def test_an_nginx_escape_json_log_is_read_with_its_format(tmp_path, capsys):
    import json

    fmt = ("escape=json '{\"time\":\"$time_iso8601\",\"remote_addr\":\"$remote_addr\","
           "\"request\":\"$request\",\"status\":\"$status\",\"cookie\":\"$http_cookie\","
           "\"up\":\"$upstream_addr\"}'")
    log = tmp_path / "access.json.log"
    log.write_text('{"time":"2026-11-25T15:25:41+00:00","remote_addr":"192.0.2.9","request":'
                   '"GET /caf\\u00e9?q=\\"x\\" HTTP/1.1","status":"200","cookie":"sid=a",'
                   '"up":"127.0.0.2:8080"}\nnot json\n')
    out = tmp_path / "out.jsonl"
    code = main(["trace", "import", "nginx", str(log), "-o", str(out), "--log-format", fmt,
                 "--skip-bad", "--no-redact"])
    assert code == 0, capsys.readouterr()
    assert "not a JSON object" in capsys.readouterr().out
    record = json.loads(out.read_text().splitlines()[1])
    assert record["path"] == '/café?q="x"' and record["client_ip"] == "192.0.2.9"
    assert record["cookies_sent"] == {"sid": "a"} and record["replica"] == "127.0.0.2:8080"
    with pytest.raises(InputError, match="one \\$variable"):
        from harness.trace.importers.nginx import NginxLineParser

        NginxLineParser('{"t": "$msec $request"}')


@pytest.mark.parametrize("span_s, speed, warned", [(30 * 86400, 1.0, True), (1800, 1.0, False),
                                                   (30 * 86400, float("inf"), False),
                                                   (30 * 86400, 1000.0, False)])
def test_a_replay_that_would_take_hours_says_so_with_a_speed_that_would_not(span_s, speed,
                                                                            warned):
    from harness.replay_cli import long_replay_warning
    from harness.trace import TraceRecord

    records = [TraceRecord(t=0.0, session="s", method="GET", path="/"),
               TraceRecord(t=float(span_s), session="s", method="GET", path="/", seq=1)]
    warning = long_replay_warning(records, speed)
    assert (warning is not None) == warned
    if warned:
        assert "30.0 days" in warning and "--speed 4320 takes about ten minutes" in warning


@pytest.mark.parametrize("fmt, sample", [("haproxy", HAPROXY_LOG), ("har", HAR)])
def test_a_dash_is_standard_input_and_output(fmt, sample, tmp_path):
    """`stickler trace import FMT - -o - | stickler trace check -`: the trace on stdout is
    the one a file would get, and the summary goes to stderr."""
    to_file = tmp_path / "file.jsonl"
    assert main(["trace", "import", fmt, str(sample), "-o", str(to_file)]) == 0
    imported = subprocess.run([str(STICKLER), "trace", "import", fmt, "-", "-o", "-"],
                              input=sample.read_bytes(), capture_output=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    assert b"requests from" in imported.stderr
    piped = imported.stdout.decode().splitlines()
    assert piped[1:] == to_file.read_text().splitlines()[1:]  # the header names the source
    checked = subprocess.run([str(STICKLER), "trace", "check", "-"], input=imported.stdout,
                             capture_output=True, timeout=60)
    assert checked.returncode == 0 and b"ok" in checked.stdout, checked.stderr


def test_every_option_of_every_command_says_what_it_is_for():
    import argparse

    from harness.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.help is None and action.dest != "help":
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), ["stickler"])
    assert missing == []


@pytest.mark.parametrize("old, new", [(["compose", "render", "--out"], ["compose", "render",
                                                                         "--out-dir"])])
def test_an_old_spelling_still_works_beside_the_one_documented(old, new, tmp_path, capsys):
    topology = str(ROOT / "fixtures" / "topologies" / "haproxy-roundrobin.yaml")
    for argv, out in ((old, tmp_path / "a"), (new, tmp_path / "b")):
        assert main([*argv[:2], topology, argv[2], str(out)]) == 0
    assert sorted(p.name for p in (tmp_path / "a").rglob("*")) == \
        sorted(p.name for p in (tmp_path / "b").rglob("*"))
    assert "--out " not in capsys.readouterr().out
    import subprocess as sp
    helptext = sp.run([str(STICKLER), "compose", "--help"], capture_output=True, text=True)
    assert "--out-dir" in helptext.stdout and "--out " not in helptext.stdout


@pytest.mark.parametrize("data, message", [
    (b'{"log": {"entries": [ {"a": "\xff\xfe"} ] } }', "invalid bytes in UTF8 string"),
    ('{"log": {"entries": []}}'.encode("utf-16"), "the file is UTF-16"),
])
def test_a_har_error_reads_as_text_not_as_python_bytes(data, message, tmp_path, capsys):
    har = tmp_path / "export.har"
    har.write_bytes(data)
    code, err = run(capsys, "trace", "import", "har", str(har), "-o", str(tmp_path / "o"))
    assert code == 2 and message in err and "b'" not in err and "\\n" not in err, err
