"""`stickler load`: input errors before anything starts, thresholds decide the exit code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.load_cli import parse_fault

ROOT = Path(__file__).resolve().parents[1]
STICKLER = Path(sys.executable).parent / "stickler"
TOPOLOGY = str(ROOT / "fixtures/topologies/haproxy-roundrobin.yaml")
PROFILE = str(ROOT / "fixtures/profiles/smoke.yaml")


def stickler(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([str(STICKLER), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)


def test_fault_syntax():
    step = parse_fault("kill:r1@20")
    assert (step.at, step.op, step.target) == (20.0, "kill", "r1")
    assert parse_fault("add@3.5s").target is None
    assert parse_fault("disconnect:r2@4").op == "disconnect"
    assert parse_fault("drain:r1@2").op == "drain"
    for bad in ("kill@20", "explode:r1@3", "kill:r1", "pause:r1@soon"):
        with pytest.raises(InputError):
            parse_fault(bad)


@pytest.mark.parametrize("args, words", [
    (["--fail-on", "stickiness<0.99"], ["--fail-on", "unknown metric", "min_stickiness"]),
    (["--fail-on", "min_stickiness is low"], ["--fail-on", "<metric> <op> <number>"]),
    (["--fault", "kill:r9@3"], ["--fault", "no replica 'r9'"]),
    (["--duration", "0"], ["--duration"]),
    (["--fault", "disconnect:r1@3"], ["--fault", "--runtime containers"]),
    # The store is a target only where the app keeps its sessions in one.
    (["--fault", "kill:store@3"], ["--fault", "no replica 'store'", "r1, r2, r3"]),
])
def test_bad_input_exits_2_before_starting(tmp_path, args, words):
    report = tmp_path / "r"
    result = stickler("load", "--topology", TOPOLOGY, "--profile", PROFILE,
                      "--report-dir", str(report), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    for word in words:
        assert word in result.stderr
    assert not report.exists()


@pytest.mark.integration
def test_threshold_fails_the_run_and_the_report_says_why(tmp_path):
    report = tmp_path / "r"
    result = stickler("load", "--topology", TOPOLOGY, "--profile", PROFILE, "--duration", "4",
                      "--seed", "5", "--fail-on", "mean_stickiness<0.9",
                      "--fail-on", "errors>1000", "--report-dir", str(report))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "FAIL mean_stickiness < 0.9" in out
    data = json.loads((report / "report.json").read_text())
    assert data["verdict"] == "fail" and data["seed"] == 5
    assert data["triggered"] == ["mean_stickiness < 0.9"]
    assert data["metrics"]["requests"] > 50 and data["metrics"]["load_cv"] < 0.2
    lines = (report / "history.jsonl").read_text().splitlines()
    assert len(lines) == data["metrics"]["total_requests"] >= data["metrics"]["requests"]
    assert not (report / "work").exists()
