"""`stickler trace import` and `stickler trace check`: what they print, exit codes, and
that bad input leaves no output behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "fixtures/traces/samples"
STICKLER = Path(sys.executable).parent / "stickler"


def test_import_then_check(tmp_path, capsys):
    out = tmp_path / "nginx.jsonl"
    assert main(["trace", "import", "nginx", str(SAMPLES / "nginx-access.log"),
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "13 requests from 14 lines" in printed and "1 skipped, redacted" in printed
    assert "nginx-access.log:14: not a replayable request line" in printed
    assert main(["trace", "check", str(out)]) == 0
    summary = capsys.readouterr().out
    for words in ("ok (stickler-trace v1, redacted, from nginx nginx-access.log)",
                  "requests  13", "sessions  5", "clients   5", "replicas  3"):
        assert words in summary
    assert main(["trace", "import", "nginx", str(SAMPLES / "nginx-access.log"),
                 "-o", str(out)]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err


def test_options_reach_the_importer(tmp_path, capsys):
    out = tmp_path / "h.jsonl"
    assert main(["trace", "import", "haproxy", str(SAMPLES / "haproxy-access.log"), "-o",
                 str(out), "--session-key", "cookie:SRVID", "--no-redact",
                 "--link-window", "0", "--capture", "Cookie"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["redacted"] is False and lines[0]["session_key"] == "cookie:SRVID"
    assert {r["session"] for r in lines[1:]} == {
        "ip:127.0.0.1", "cookie:SRVID=r1", "cookie:SRVID=r2", "cookie:SRVID=r3"}
    assert any("s3cret" in r["path"] for r in lines[1:])


def test_har_client_ip_option(tmp_path):
    har = tmp_path / "one.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": [{
        "startedDateTime": "2026-11-25T15:00:00Z",
        "request": {"method": "GET", "url": "http://127.0.0.1/", "headers": []},
        "response": {"status": 200, "headers": []}}]}}))
    out = tmp_path / "one.jsonl"
    assert main(["trace", "import", "har", str(har), "-o", str(out),
                 "--client-ip", "203.0.113.5"]) == 0
    record = json.loads(out.read_text().splitlines()[1])
    assert (record["client_ip"], record["session"]) == ("203.0.113.5", "ip:203.0.113.5")


def snapshot(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("args, where", [
    (["trace", "import", "haproxy", "{nginx}", "-o", "{out}"], "nginx-access.log:1:"),
    (["trace", "import", "nginx", "{bad}", "-o", "{out}"], "bad.log:3:"),
    (["trace", "import", "har", "{bad}", "-o", "{out}"], "bad.log:1:"),
    (["trace", "import", "nginx", "{nginx}", "-o", "{out}", "--session-key", "user"],
     "--session-key:"),
    (["trace", "import", "nginx", "{nginx}", "-o", "{out}", "--capture", "Host"],
     "--capture: only for haproxy"),
    (["trace", "import", "nginx", "{nginx}", "-o", "{out}", "--log-format", "$status"],
     "--log-format:"),
    (["trace", "import", "nginx", "{nginx}", "-o", "{out}", "--secret-names", "("],
     "--secret-names:"),
    (["trace", "import", "nginx", "{missing}", "-o", "{out}"], "missing.log:"),
    (["trace", "check", "{bad}"], "bad.log:1:"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, where):
    bad = tmp_path / "bad.log"
    good_line = (SAMPLES / "nginx-access.log").read_text().splitlines()[1]
    bad.write_text(f"{good_line}\n{good_line}\nrubbish\n")
    names = {"nginx": SAMPLES / "nginx-access.log", "bad": bad, "out": tmp_path / "o.jsonl",
             "missing": tmp_path / "missing.log"}
    before = snapshot(tmp_path)
    assert main([a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stickler: error: ") and where in err
    assert snapshot(tmp_path) == before and bad.read_text().endswith("rubbish\n")


def test_exit_code_of_the_installed_command(tmp_path):
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"format":"stickler-trace","version":1,"start":0}\n{"t":0,"sess')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run([str(STICKLER), "trace", "check", str(cut)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2 and f"{cut}:2: truncated line" in done.stderr


@pytest.mark.parametrize("signum, code", [(15, 143), (2, 130)])
def test_interrupted_import_leaves_no_file(tmp_path, signum, code):
    import importlib.util
    import signal
    import time

    spec = importlib.util.spec_from_file_location("bench_import", ROOT / "benchmarks/import.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    log = tmp_path / "big.log"
    bench.generate("nginx", log, 30_000_000, seed=3)
    out = tmp_path / "out" / "t.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.Popen([str(STICKLER), "trace", "import", "nginx", str(log), "-o",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("out/.t.jsonl.*.tmp")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert list(tmp_path.glob("out/.t.jsonl.*.tmp")), "the import never started writing"
        proc.send_signal(signal.Signals(signum))
        assert proc.wait(timeout=60) == code
    finally:
        proc.kill()
        proc.wait()
    assert list((tmp_path / "out").iterdir()) == []
