"""The `stickler` command end to end: input errors name file, line and key before anything
starts; conformance runs write a complete report and leave no process or temp dir behind,
even when interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.balancers import ADAPTERS
from tests.procs import RUN_MARK, Proc, default_sigint, descends_from, processes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
STICKLER = Path(sys.executable).parent / "stickler"
TOPOLOGIES = ROOT / "fixtures" / "topologies"
BAD_MODE = "fixtures/topologies/negative/bad-mode.yaml"
CLAIMS_COOKIE = "fixtures/topologies/negative/haproxy-roundrobin-claims-cookie-insert.yaml"
REQUIRED_CHECK_KEYS = ("id", "balancer", "mode", "runtime", "verdict", "metrics", "threshold",
                       "citation")


def _env() -> dict[str, str]:
    # The conformance command runs pytest in-process: keep this run's pytest settings out.
    return {k: v for k, v in os.environ.items()
            if not k.startswith("PYTEST_") and k != "STICKLER_SEED"}


def stickler(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(STICKLER), *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)



def wait_no_new_processes(marker: str, before: dict[int, Proc], timeout: float = 10.0,
                          run: str | None = None) -> dict[int, Proc]:
    """Poll until every process mentioning `marker` (of `run`, if given) predates the test;
    the rest if not."""
    deadline = time.monotonic() + timeout
    while True:
        new = {pid: desc for pid, desc in processes(marker, run).items() if pid not in before}
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.05)


def temp_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("stickler-*"))


# ---- input errors --------------------------------------------------------------------


def test_validate_bad_mode_names_file_line_key_and_choices():
    result = stickler("topology", "validate", BAD_MODE)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert BAD_MODE in err and f"{BAD_MODE}:5:" in err, err
    assert "balancer.mode" in err and "cookie-insrt" in err, err
    allowed = err.split("expected one of", 1)[-1]
    for mode in ADAPTERS["haproxy"].modes:
        assert mode in allowed, f"allowed mode {mode} not listed: {err}"
    assert "Traceback" not in err and result.stdout == ""


def test_validate_every_sample_topology():
    files = sorted(TOPOLOGIES.glob("*.yaml"))
    assert len(files) >= 10
    result = stickler("topology", "validate", *(str(f.relative_to(ROOT)) for f in files))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(files)
    for f, line in zip(files, lines, strict=True):
        assert line.startswith(f"{f.relative_to(ROOT)}: ok ("), line


def test_render_cookie_insert():
    result = stickler("topology", "render", "fixtures/topologies/haproxy-cookie-insert.yaml")
    assert result.returncode == 0, result.stderr
    assert "cookie SRVID insert indirect nocache" in result.stdout
    assert result.stdout.count("server r") == 3


def test_conformance_with_bad_topology_writes_nothing(tmp_path):
    reports = tmp_path / "reports"
    dirs_before = temp_dirs()
    result = stickler("conformance", "--topology", BAD_MODE, "--report-dir", str(reports / "r"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{BAD_MODE}:5:" in result.stderr and "balancer.mode" in result.stderr
    assert not reports.exists(), "a report dir was created for input that was rejected"
    assert temp_dirs() - dirs_before == set()


@pytest.mark.parametrize("command", ["validate", "conformance"])
def test_malformed_yaml_names_the_line(tmp_path, command):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\n"
                      "# the next line has an unterminated flow mapping\n"
                      "balancer: {kind: haproxy, mode: roundrobin]\n"
                      "replicas: 3\n")
    if command == "validate":
        result = stickler("topology", "validate", str(broken))
    else:
        result = stickler("conformance", "--topology", str(broken),
                          "--report-dir", str(tmp_path / "r"))
        assert not (tmp_path / "r").exists()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{broken}:3:" in result.stderr, result.stderr
    assert "YAML" in result.stderr and "Traceback" not in result.stderr


# ---- conformance runs ----------------------------------------------------------------


def test_conformance_catches_roundrobin_claiming_cookie_insert(tmp_path):
    marker = "stickler-haproxy-roundrobin-claims"
    procs_before, dirs_before = processes(marker), temp_dirs()
    report_dir = tmp_path / "r"
    result = stickler("conformance", "--topology", CLAIMS_COOKIE,
                      "--report-dir", str(report_dir), "--suite", "stickiness", "-k", "sticky")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "session s" in out and "->" in out, out
    assert "HAProxy 2.6 Configuration Manual" in out, out

    report = json.loads((report_dir / "report.json").read_text())
    checks = report["checks"]
    assert checks, report
    for check in checks:
        missing = [k for k in REQUIRED_CHECK_KEYS if k not in check]
        assert not missing, f"check {check.get('id')} lacks {missing}"
        assert check["verdict"] == "fail", check["id"]
        assert check["balancer"] == "haproxy" and check["mode"] == "roundrobin"
        assert check["runtime"] == "processes"
        assert check["metrics"] and check["threshold"]
        assert "HAProxy 2.6 Configuration Manual" in check["citation"]["document"]
    assert report["summary"]["fail"] == len(checks) == report["summary"]["total"]

    suites = ET.parse(report_dir / "junit.xml").getroot()
    failures = sum(int(s.get("failures", 0)) for s in suites.iter("testsuite"))
    assert failures == len(checks)

    assert wait_no_new_processes(marker, procs_before) == {}
    assert {d for d in temp_dirs() - dirs_before if marker in d.name} == set()


def test_conformance_nginx_ip_hash_passes_with_seed(tmp_path):
    report_dir = tmp_path / "r"
    result = stickler("conformance", "--topology", "fixtures/topologies/nginx-ip-hash.yaml",
                      "--report-dir", str(report_dir), "--seed", "42")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((report_dir / "report.json").read_text())
    assert report["seed"] == 42
    assert "nginx" in report["versions"]
    assert report["summary"]["fail"] == 0
    assert len(report["checks"]) >= 3
    assert all(c["verdict"] == "pass" and c["balancer"] == "nginx" for c in report["checks"])
    assert (report_dir / "junit.xml").exists()


@pytest.mark.parametrize("signum, to_group", [
    (signal.SIGINT, False),  # Ctrl-C, sent to stickler alone
    (signal.SIGTERM, False),  # CI cancelling the job
    (signal.SIGHUP, True),  # the terminal closed: every process of the job gets it
], ids=["sigint", "sigterm", "sighup-to-group"])
def test_signal_during_conformance_stops_everything(tmp_path, signum, to_group):
    # This run's own temp dir and an environment mark: other harness runs on the machine
    # (a developer's, another checkout's) neither hide a leak nor count as one.
    # (A short path: HAProxy's admin socket lives in the cluster's workdir, and a Unix
    # socket path has at most 107 bytes.)
    run, tmp = uuid.uuid4().hex, Path(tempfile.mkdtemp(prefix="st-"))
    procs_before = processes("stickler-", run)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([str(STICKLER), "conformance", "--balancer", "haproxy",
                                 "--report-dir", str(tmp_path / "r")], cwd=ROOT,
                                env={**_env(), "TMPDIR": str(tmp), RUN_MARK: run},
                                stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                preexec_fn=default_sigint, process_group=0)
    try:
        # Wait until this run is starting a cluster: a haproxy below it (in a worker, in a
        # concurrent run), whose command line names the config in a stickler-haproxy-*
        # workdir, exists.
        deadline = time.monotonic() + 30
        while not any(descends_from(pid, proc.pid) and "stickler-haproxy" in p.cmdline
                      for pid, p in processes("stickler-haproxy", run).items()):
            assert proc.poll() is None, f"stickler exited early:\n{err.read_text()}"
            assert time.monotonic() < deadline, "no haproxy cluster started within 30 s"
            time.sleep(0.05)
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"stickler did not exit within 30 s of {signal.Signals(signum).name}")
        assert code != 0, out.read_text()
        if signum != signal.SIGHUP:
            assert code == 128 + signum, err.read_text()  # 130 Ctrl-C, 143 SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert wait_no_new_processes("stickler-", procs_before, run=run) == {}
    left = list(tmp.iterdir())
    if not left:
        tmp.rmdir()
    assert left == []  # what leaked stays there to look at
