"""A concurrent conformance run end to end: checks run in worker processes, and the report,
JUnit XML, histories and log say what a serial run of the same checks and seed says."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from tests.test_cli import stickler

pytestmark = pytest.mark.integration

TOPOLOGIES = ["caddy-first", "caddy-random", "caddy-roundrobin", "reference-hash-header"]
PLAIN_LINE = re.compile(r"^\[\s*(\d+)/(\d+)\]\s+\d+s\s+(PASS|FAIL|UNKNOWN|ERROR)\s+[\d.]+s\s+\S+")


def _run(tmp_path, jobs: str) -> tuple[str, dict, ET.Element]:
    args = [a for t in TOPOLOGIES for a in ("--topology", f"fixtures/topologies/{t}.yaml")]
    result = stickler("conformance", *args, "--suite", "stickiness", "--seed", "7",
                      "--jobs", jobs, "--report-dir", str(tmp_path / jobs), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / jobs / "report.json").read_text())
    return result.stdout, report, ET.parse(tmp_path / jobs / "junit.xml").getroot()


def test_jobs_run_checks_in_workers_and_report_what_a_serial_run_does(tmp_path):
    out, report, junit = _run(tmp_path, "3")
    checks = report["checks"]
    keys = {f"{c['topology']}:{c['id']}" for c in checks}
    assert len(checks) >= 6 and {c["topology"] for c in checks} == set(TOPOLOGIES)

    # The schedule: 3 jobs; every check in exactly one group; a group's checks share one
    # topology, and a topology whose checks do not fault it is one group (one cluster).
    schedule = report["schedule"]
    assert schedule["jobs"] == 3
    grouped = [key for group in schedule["groups"] for key in group["checks"]]
    assert len(grouped) == len(checks) == len(set(grouped))
    for group in schedule["groups"]:
        assert len({key.split(":")[1] for key in group["checks"]}) == 1
        assert group["wall_s"] > 0 and group["started_s"] >= 0
    assert len(schedule["groups"]) < len(checks)  # clusters were shared
    assert all(c["wall_s"] > 0 for c in checks)

    # Not a terminal: one plain line per finished check, numbered 1..N, then the slowest.
    lines = [PLAIN_LINE.match(line) for line in out.splitlines()]
    numbered = sorted(int(m.group(1)) for m in lines if m)
    assert numbered == list(range(1, len(checks) + 1))
    assert {int(m.group(2)) for m in lines if m} == {len(checks)}
    assert "slowest" in out

    # JUnit: one case per check, each with the worker's wall time as its duration.
    cases = list(junit.iter("testcase"))
    assert len(cases) == len(checks)
    assert all(float(case.get("time")) > 0 for case in cases)

    # The workers' histories were merged into the report's histories/, one file per topology.
    histories = _histories(tmp_path / "3")
    assert set(histories) == {f"{t}.jsonl" for t in TOPOLOGIES}

    # The same checks one by one, with the same seed: the same verdicts and samples.
    _, serial, _ = _run(tmp_path, "1")
    assert "schedule" not in serial  # pytest's own loop ran it
    by_key = {f"{c['topology']}:{c['id']}": c for c in serial["checks"]}
    assert set(by_key) == keys
    for check in checks:
        other = by_key[f"{check['topology']}:{check['id']}"]
        assert (check["verdict"], check["samples"]) == (other["verdict"], other["samples"])
    assert _histories(tmp_path / "1") == histories  # as many requests of each check


def _histories(report_dir) -> dict[str, dict[str, int]]:
    """Per history file, the number of request records of each check."""
    found = {}
    for path in (report_dir / "histories").glob("*.jsonl"):
        counts: dict[str, int] = {}
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("type") == "request":
                counts[record["check"]] = counts.get(record["check"], 0) + 1
        found[path.name] = counts
    return found
