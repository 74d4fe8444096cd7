"""The whole CLI against random input: for every subcommand that reads a file a user gives
(a topology, a config, a trace, a HAR or log), random bytes, random YAML and random JSON end
in exit 0, 1, 2 or 3 with a message, never a traceback, and never a partial output: after a
refusal (2, 3) the output folder is as it was (empty), after a run (0, or 1 for a verdict
that failed) every output is whole. A mutated sample that is still valid really runs.

Bounded (60 examples per target, STICKLER_FUZZ_EXAMPLES for more) so that it runs in
`make test`; hypothesis prints the failing input and its seed (`--hypothesis-seed` reruns
it)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
GOOD_TOPOLOGY = str(ROOT / "fixtures" / "topologies" / "haproxy-roundrobin.yaml")
SMALL_TRACE = str(ROOT / "suites" / "regressions" /
                  "nginx-cookie-hash-memory-first-request.jsonl")
FUZZ = settings(max_examples=int(os.environ.get("STICKLER_FUZZ_EXAMPLES", 60)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers() | st.floats() |
           st.text(max_size=12) | st.sampled_from(["haproxy", "nginx", "r1",
                                                   "balancer", "kind", "mode", ".nan", "-"]))
KEYS = st.sampled_from(["name", "balancer", "kind", "mode", "replicas", "options", "app",
                        "config", "backend", "client_ip", "health_check", "suites", "t",
                        "session", "method", "path", "log", "entries", "request", "format",
                        "version", "start", "headers_sent"]) | st.text(max_size=8)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                         st.dictionaries(KEYS, inner, max_size=5), max_leaves=20)


@st.composite
def file_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "yaml", "json", "jsonl"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    doc = draw(documents)
    if kind == "yaml":
        return yaml.safe_dump(doc, allow_unicode=True).encode()
    if kind == "json":
        return json.dumps(doc).encode()
    header = {"format": "stickler-trace", "version": 1, "start": 0}
    lines = [header, *draw(st.lists(documents, max_size=3))]
    return "\n".join(json.dumps(x) for x in lines).encode()


# Each target: the argv for an input file and an output folder. None of them can start a
# cluster on random input (a valid topology or trace is needed for that, and the other
# inputs are fixed invalid or absent).
TARGETS = {
    "topology validate": lambda f, out: ["topology", "validate", f],
    "topology render": lambda f, out: ["topology", "render", f],
    "compose render": lambda f, out: ["compose", "render", f, "--out-dir", out],
    "trace import har": lambda f, out: ["trace", "import", "har", f, "-o", f"{out}/t.jsonl"],
    "trace import haproxy": lambda f, out: ["trace", "import", "haproxy", f,
                                            "-o", f"{out}/t.jsonl"],
    "trace import nginx": lambda f, out: ["trace", "import", "nginx", f, "-o", f"{out}/t.jsonl"],
    "trace import history": lambda f, out: ["trace", "import", "history", f,
                                            "-o", f"{out}/t.jsonl"],
    "trace check": lambda f, out: ["trace", "check", f],
    "inspect haproxy": lambda f, out: ["inspect", f, "--kind", "haproxy"],
    "inspect nginx": lambda f, out: ["inspect", f, "--kind", "nginx"],
    "inspect apache": lambda f, out: ["inspect", f, "--kind", "apache"],
    "replay (the trace)": lambda f, out: ["replay", f, "--topology", GOOD_TOPOLOGY,
                                          "--report-dir", f"{out}/r"],
    "replay (the topology)": lambda f, out: ["replay", SMALL_TRACE, "--topology", f,
                                             "--report-dir", f"{out}/r"],
}


# Real inputs each target reads, mutated by random edits: they get past the first checks.
SAMPLES = {
    "topology": ROOT / "fixtures" / "topologies" / "nginx-cookie-hash.yaml",
    "compose": ROOT / "fixtures" / "topologies" / "haproxy-cookie-insert.yaml",
    "trace import har": ROOT / "fixtures" / "traces" / "samples" / "chromium-haproxy.har",
    "trace import haproxy": ROOT / "fixtures" / "traces" / "samples" / "haproxy-access.log",
    "trace import nginx": ROOT / "fixtures" / "traces" / "samples" / "nginx-access.log",
    "trace check": Path(SMALL_TRACE),
    "trace import history": Path(SMALL_TRACE),
    "replay (the trace)": Path(SMALL_TRACE),
    "inspect haproxy": ROOT / "fixtures" / "configs" / "haproxy" / "acl-routing" / "haproxy.cfg",
    "inspect nginx": ROOT / "fixtures" / "configs" / "nginx" / "ip-hash-scale-up" / "nginx.conf",
    "inspect apache": ROOT / "fixtures" / "configs" / "apache" / "route-cookie" / "shop.conf",
    "replay (the topology)": ROOT / "fixtures" / "topologies" / "haproxy-roundrobin.yaml",
}


@st.composite
def mutated(draw, sample: Path) -> bytes:
    data = sample.read_bytes()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 8))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at + cut:]
    return data


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_random_input_ends_in_a_message_and_no_partial_output(target):
    make_argv = TARGETS[target]
    sample = SAMPLES.get(target) or SAMPLES.get(target.split()[0])
    inputs = file_bytes() | mutated(sample) if sample else file_bytes()

    @FUZZ
    @given(data=inputs)
    def check(data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="stickler-fuzz-") as tmp:
            source, out = Path(tmp) / "input", Path(tmp) / "out"
            source.write_bytes(data)
            out.mkdir()
            code, err = run_cli(make_argv(str(source), str(out)))  # a traceback raises here
            assert code in (0, 1, 2, 3), (code, err)
            if code == 2:
                assert err.strip(), "a refusal says why"
            left = sorted(p.name for p in out.rglob("*"))
            if code in (2, 3):  # refused: nothing written
                assert left == [], f"exit {code} left {left}"
            else:  # done (1: a verdict that failed): every output whole
                assert not [n for n in left if n.startswith(".")], left
                for report in out.rglob("report.json"):
                    json.loads(report.read_text())
                for trace in out.glob("*.jsonl"):
                    assert run_cli(["trace", "check", str(trace)])[0] in (0, 1)
            assert source.read_bytes() == data  # the input is never changed

    check()
