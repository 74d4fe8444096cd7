"""`stickler load`: a Locust population through one topology, with live progress, an
optional fault schedule, pass/fail thresholds for CI, and a JSON report."""

from __future__ import annotations

import argparse
import random
import re
import shutil
import time
from pathlib import Path

from harness import argtypes
from harness.errors import InputError
from harness.runtime.store import NAME as STORE

SUMMARY_KEYS = ("total_requests", "requests", "errors", "unserved", "non_2xx",
                "min_stickiness", "mean_stickiness", "state_losses", "load_cv",
                "busiest_replica_share", "max_users_per_ip", "affected_sessions",
                "affected_state_loss_share", "errors_after_fault", "repin_p50_s",
                "new_replica_request_share_after", "locust_rps")
FAULT = re.compile(r"^(kill|pause|resume|restart|add|remove|drain|undrain|disconnect|reconnect)"
                   r"(?::([a-z0-9-]+))?@([0-9.]+)s?$")


def parse_fault(text: str):
    """`kill:r1@20` -> FaultStep(20.0, "kill", "r1"); `add@30` -> FaultStep(30.0, "add")."""
    from harness.traffic.load import FaultStep

    match = FAULT.match(text.strip())
    if not match:
        raise InputError(f"expected OP[:REPLICA]@SECONDS (e.g. kill:r1@20, add@30), got "
                         f"{text!r}", key="--fault")
    op, target, at = match.groups()
    if op != "add" and not target:
        raise InputError(f"{op} needs a replica: {op}:r1@{at}", key="--fault")
    return FaultStep(float(at), op, target)


def parse_fail_on(text: str):
    from harness.expectations import parse_condition

    try:
        return parse_condition(text)
    except ValueError as exc:
        raise InputError(str(exc), key="--fail-on") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    load = sub.add_parser("load", help="drive a Locust user population through a topology")
    load.add_argument("--topology", required=True, metavar="FILE", help="a topology YAML file")
    load.add_argument("--profile", required=True, metavar="FILE",
                      help="a profile YAML (see fixtures/profiles/)")
    load.add_argument("--duration", type=argtypes.seconds, default=60.0, metavar="SECONDS",
                      help="how long the users run (default 60)")
    load.add_argument("--processes", type=int, default=1,
                      help="Locust worker processes (default 1)")
    load.add_argument("--fault", action="append", default=[], metavar="OP[:REPLICA]@SECONDS",
                      help="fault schedule, e.g. kill:r1@20, pause:r2@10, add@30 (repeatable)")
    load.add_argument("--fail-on", action="append", default=[], metavar="CONDITION",
                      help="exit 1 when the condition holds, e.g. 'min_stickiness<0.99'")
    load.add_argument("--runtime", default="processes", choices=["processes", "containers"],
                      help="how the cluster is started (containers: needs a Docker daemon)")
    load.add_argument("--seed", type=int, default=None,
                      help="rerun with this seed (default: a new one, in the report)")
    load.add_argument("--report-dir", default=None, metavar="DIR",
                      help="where the report goes (default: reports/<time>-load-<topology>/)")
    load.add_argument("--web", action="store_true", help="serve Locust's web UI on 127.0.0.1")
    load.set_defaults(func=cmd_load)


def cmd_load(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from harness import runtime
    from harness.balancers import get_adapter
    from harness.history import HistoryWriter
    from harness.load_scenarios import LOAD_METRICS, load_metrics
    from harness.report.checks import write_json_atomic
    from harness.topology import load_topology
    from harness.traffic.load import run_load
    from harness.traffic.profile import load_profile

    # Every input is checked before anything starts.
    topology = load_topology(args.topology)
    profile = load_profile(args.profile)
    faults = [parse_fault(f) for f in args.fault]
    fail_on = [parse_fail_on(c) for c in args.fail_on]
    unknown = [c.metric for c in fail_on if c.metric not in LOAD_METRICS]
    if unknown:
        raise InputError(f"unknown metric(s) {', '.join(unknown)}; expected one of: "
                         f"{', '.join(sorted(LOAD_METRICS))}", key="--fail-on")
    if args.duration <= 0:
        raise InputError("expected a positive number of seconds", key="--duration")
    if args.processes < 1:
        raise InputError("expected at least 1", key="--processes")
    adapter = get_adapter(topology.kind)
    for step in faults:
        targets = [*topology.replica_ids,
                   *([STORE] if topology.app.session_store != "memory" else [])]
        if step.target and step.target not in targets:
            raise InputError(f"no replica {step.target!r} in {topology.name}; it has "
                             f"{', '.join(targets)}", key="--fault")
        if step.target == STORE and step.op in ("drain", "undrain"):
            raise InputError(f"{step.op} applies to replicas, not the session store",
                             key="--fault")
        if step.op in ("disconnect", "reconnect") and args.runtime != "containers":
            raise InputError(f"{step.op} cuts a replica off the network: it needs "
                             f"--runtime containers", key="--fault")
        if step.op in ("drain", "undrain") and adapter.no_drain:
            raise InputError(f"{topology.kind} cannot drain: {adapter.no_drain}",
                             key="--fault")
    if args.runtime == "processes":
        get_adapter(topology.kind).which()  # the balancer's binary, before anything starts
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    from harness.cli import REPORTS

    report_dir = Path(args.report_dir or REPORTS / f"{stamp}-load-{topology.name}")
    if (report_dir / "report.json").exists():
        raise InputError("a report is already there; choose another --report-dir",
                         file=str(report_dir / "report.json"))

    console = Console()
    console.print(f"load: {profile.name} ({profile.users} users) through {topology.name} "
                  f"for {args.duration:g}s, seed {seed}")
    work = report_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with runtime.start(topology, args.runtime) as cluster, Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[requests]} requests"), console=console,
            transient=True) as progress:
        task = progress.add_task("running", total=args.duration, requests=0)
        original = list(cluster.replica_ids)
        result = run_load(cluster, profile, duration=args.duration, seed=seed, workdir=work,
                          processes=args.processes, faults=faults, web=args.web,
                          progress=lambda elapsed, n: progress.update(
                              task, completed=min(elapsed, args.duration), requests=n))
        versions = cluster.versions()
        ran = cluster.topology  # the runtime may carry client addresses differently
    values = load_metrics(result.records, original)
    values["locust_rps"] = result.stats.get("rps", 0.0) if result.stats else 0.0
    triggered = [str(c) for c in fail_on if c.holds(values)]
    with HistoryWriter(report_dir / "history.jsonl") as history:
        for record in result.records:
            history.write(record)
    shutil.rmtree(work, ignore_errors=True)
    write_json_atomic(report_dir / "report.json", {
        "schema_version": 1, "kind": "load", "seed": seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration": result.duration, "topology": ran.to_dict(),
        "runtime": args.runtime,
        "profile": profile.to_dict(), "faults": [vars(f) for f in faults],
        "versions": versions, "metrics": values, "locust": result.stats,
        "fail_on": [str(c) for c in fail_on], "triggered": triggered,
        "verdict": "fail" if triggered else "pass",
    })
    table = Table(title=f"{topology.name} under {profile.name}", box=None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SUMMARY_KEYS:
        value = values.get(key, -1.0)
        if value != -1.0:
            table.add_row(key, f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}")
    console.print(table)
    for condition in triggered:
        console.print(f"[bold red]FAIL[/] {condition} (measured {values[condition.split()[0]]:g})")
    console.print(f"report: {report_dir / 'report.json'}")
    return 1 if triggered else 0
