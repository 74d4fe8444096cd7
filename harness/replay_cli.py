"""`stickler replay` and `stickler diff`: a recorded trace through one topology (which
sessions broke, at which request) or through several, compared with the reference proxy
as the oracle (where they differ in kind: split sessions, lost state, errors, skew)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import InputError

RERUNS = 10  # replays of the shrunk trace, to measure how often it fails

ORACLE = Path(__file__).resolve().parents[1] / "fixtures" / "topologies" / "reference-cookie.yaml"
SHOWN = 20  # broken sessions listed on the terminal (the report has them all)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from harness.runtime import RUNTIMES

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("trace", metavar="TRACE", help="a trace (stickler trace import)")
        p.add_argument("--speed", default="1", help="1 keeps the recorded timing, 10 is ten "
                       "times faster, max as fast as possible (default 1)")
        p.add_argument("--concurrency", type=int, default=32,
                       help="requests in flight at most (default 32)")
        p.add_argument("--runtime", default="processes", choices=sorted(RUNTIMES),
                       help="where the cluster runs: processes (default) or containers")
        p.add_argument("--report-dir", default=None, metavar="DIR",
                       help="where the report goes (default: reports/<time>-<command>/)")

    replay = sub.add_parser("replay", help="replay a trace through a topology and list the "
                            "sessions that broke")
    common(replay)
    replay.add_argument("--topology", required=True, metavar="FILE",
                        help="the topology to replay through")
    replay.add_argument("--allow-broken", action="store_true",
                        help="exit 0 even when sessions broke")
    replay.set_defaults(func=cmd_replay)

    diff = sub.add_parser("diff", help="replay one trace through several topologies and "
                          "compare them with the reference proxy")
    common(diff)
    diff.add_argument("--topology", action="append", required=True, metavar="FILE",
                      help="repeat for each topology to compare")
    diff.add_argument("--oracle", default=str(ORACLE), metavar="FILE",
                      help="the topology that judges (default: the reference proxy, cookie "
                      "mode)")
    diff.set_defaults(func=cmd_diff)

    shrink = sub.add_parser("shrink", help="shrink a trace to a minimal one that still "
                            "violates a property, and write it out as a regression test")
    shrink.add_argument("trace", metavar="TRACE", help="a trace on which the property fails")
    shrink.add_argument("--topology", required=True, metavar="FILE",
                        help="the topology the trace fails on")
    shrink.add_argument("--property", required=True, dest="prop",
                        help="'no session loses state', 'no session splits', 'no errors', "
                        "'no session breaks', or a condition like 'state_lost_sessions == 0'")
    shrink.add_argument("--fixed", metavar="FILE", default=None,
                        help="a topology the property holds on: the test checks that too")
    shrink.add_argument("--name", default=None, help="the regression's name (default: from "
                        "the trace and topology)")
    shrink.add_argument("--out-dir", default=None, metavar="DIR",
                        help="where the trace and test go (default suites/regressions)")
    shrink.add_argument("--runs", type=int, default=1,
                        help="replays per candidate; it fails if any run does (default 1)")
    shrink.add_argument("--every-run", action="store_true",
                        help="a candidate fails only if every one of its --runs replays "
                             "does: for a failure that depends on placement or timing, so "
                             "that the regression reproduces every time")
    shrink.add_argument("--runtime", default="processes", choices=sorted(RUNTIMES),
                        help="where the cluster runs: processes (default) or containers")
    shrink.add_argument("--force", action="store_true", help="replace an existing regression")
    shrink.set_defaults(func=cmd_shrink)


def _inputs(args: argparse.Namespace, topology_files: list[str]) -> tuple[list, list, float]:
    """Validate everything before anything starts: the trace, topologies and options."""
    from harness.balancers import get_adapter
    from harness.topology import load_topology
    from harness.trace.io import read_trace
    from harness.trace.replay import parse_speed

    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        raise InputError(str(exc), key="--speed") from None
    if args.concurrency < 1:
        raise InputError("expected at least 1", key="--concurrency")
    topologies = [load_topology(f) for f in topology_files]
    for t in topologies:
        get_adapter(t.kind).which()
    with read_trace(args.trace) as reader:
        records = list(reader)
    if not records:
        raise InputError("the trace has no requests", file=args.trace)
    warning = long_replay_warning(records, speed)
    if warning:
        print(f"stickler: warning: {warning}", file=sys.stderr)
    return topologies, records, speed


LONG_REPLAY_S = 3600.0


def long_replay_warning(records: list, speed: float) -> str | None:
    """A replay that would take more than an hour at this speed (a log of weeks at speed 1)
    says so, with the speed that would make it ten minutes (pure)."""
    times = [r.t for r in records]
    span = max(times) - min(times)
    if math.isinf(speed) or span / speed <= LONG_REPLAY_S:
        return None
    hours = span / speed / 3600
    return (f"the trace spans {_duration(span)}: at speed {speed:g} the replay takes "
            f"{hours:.1f} hours; --speed {span / 600:.0f} takes about ten minutes, "
            f"--speed max as fast as the balancer answers")


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _report_dir(args: argparse.Namespace, what: str) -> Path:
    from harness.cli import REPORTS

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = Path(args.report_dir or REPORTS / f"{stamp}-{what}")
    if (folder / "report.json").exists():
        raise InputError("a report is already there; choose another --report-dir",
                         file=str(folder / "report.json"))
    return folder


def replay_through(topology: Any, records: list, *, speed: float, concurrency: int,
                   runtime: str, history: Path, console: Any = None) -> dict[str, Any]:
    """Start `topology`, replay `records` through it, stop it; a report section."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from harness.analysis.replay import broken_sessions, replay_summary
    from harness.history import HistoryWriter
    from harness.runtime import start
    from harness.trace.replay import Replayer
    from harness.trace.schedule import LagStats

    with start(topology, runtime) as cluster, HistoryWriter(history) as sink, Progress(
            TextColumn(f"{topology.name}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("lag {task.fields[lag]:.2f}s"), console=console,
            transient=True, disable=console is None) as progress:
        task = progress.add_task("replay", total=len(records), lag=0.0)
        result = Replayer(cluster.url, speed=speed, concurrency=concurrency,
                          transport=cluster.topology.client_ip, sink=sink.write,
                          tls_ca=cluster.topology.tls_ca,
                          progress=lambda n, total, lag: progress.update(
                              task, completed=n, lag=lag)).run(records)
        versions = cluster.versions()
    broken = broken_sessions(result.records)
    return {
        "topology": topology.to_dict(), "versions": versions, "history": str(history),
        "duration": result.duration, "clients": result.clients,
        "lag": LagStats(result.lags).summary(),
        "summary": replay_summary(result.records, broken),
        "broken": [b.to_dict() for b in broken],
    }


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.outputs import staged_folder
    from harness.report.checks import write_json_atomic

    (topology,), records, speed = _inputs(args, [args.topology])
    folder = _report_dir(args, f"replay-{topology.name}")
    console = Console()
    console.print(f"replay: {len(records)} requests of {args.trace} through {topology.name} "
                  f"at speed {'max' if math.isinf(speed) else f'{speed:g}x'}, "
                  f"at most {args.concurrency} in flight")
    with staged_folder(folder) as work:
        section = replay_through(topology, records, speed=speed,
                                 concurrency=args.concurrency, runtime=args.runtime,
                                 history=work / "history.jsonl", console=console)
        section["history"] = str(folder / "history.jsonl")
        broken = section["broken"]
        write_json_atomic(work / "report.json", {
            "schema_version": 1, "kind": "replay", "trace": str(args.trace),
            "speed": "max" if math.isinf(speed) else speed, "concurrency": args.concurrency,
            "runtime": args.runtime, "seed": None,  # a replay draws no random numbers
            **section, "verdict": "fail" if broken else "pass",
        })
    _print_replay(console, section)
    console.print(f"report: {folder / 'report.json'}")
    return 1 if broken and not args.allow_broken else 0


def _print_replay(console: Any, section: dict[str, Any]) -> None:
    from rich.table import Table

    s, lag = section["summary"], section["lag"]
    console.print(f"{s['requests']} requests in {s['sessions']} sessions from "
                  f"{section['clients']} clients in {section['duration']:.1f}s; "
                  f"{s['broken_sessions']} sessions broke ({s['split_sessions']} split, "
                  f"{s['state_lost_sessions']} lost state, {s['error_sessions']} errors); "
                  f"busiest replica {s['max_load_share']:.0%}; schedule lag p50 "
                  f"{lag['lag_p50_s'] * 1000:.0f} ms, p99 {lag['lag_p99_s'] * 1000:.0f} ms")
    if not section["broken"]:
        return
    table = Table(title="broken sessions (first of each)", box=None)
    for column in ("session", "request", "kind", "detail"):
        table.add_column(column)
    for b in section["broken"][:SHOWN]:
        table.add_row(b["session"], f"{b['seq'] + 1} of {b['requests']}", b["kind"],
                      b["detail"])
    console.print(table)
    if len(section["broken"]) > SHOWN:
        console.print(f"... and {len(section['broken']) - SHOWN} more in the report")


def compare(oracle: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """How `other` differs from the oracle in kind: sessions broken only here (and how),
    sessions broken only in the oracle, and the load skew of each (pure). Cookie-less
    sessions that split in both, or by chance in one, are counted apart: under cookie
    affinity where they land is a coin toss, not a difference of the balancers."""
    theirs = {b["session"]: b for b in oracle["broken"]}
    ours = {b["session"]: b for b in other["broken"]}
    chance = {s for s, b in ours.items() if b["cookieless"] and b["kind"] == "split"} | \
        {s for s, b in theirs.items() if b["cookieless"] and b["kind"] == "split"}
    only_here = [b for s, b in ours.items() if s not in theirs and s not in chance]
    kinds: dict[str, int] = {}
    for b in only_here:
        kinds[b["kind"]] = kinds.get(b["kind"], 0) + 1
    return {
        "topology": other["topology"]["name"],
        "broken_here_only": len(only_here),
        "broken_here_only_by_kind": kinds,
        "broken_in_oracle_only": sum(1 for s in theirs if s not in ours and s not in chance),
        "cookieless_chance_splits": len(chance),
        "broken_in_both": sum(1 for s in ours if s in theirs),
        "max_load_share": other["summary"]["max_load_share"],
        "oracle_max_load_share": oracle["summary"]["max_load_share"],
        "examples": only_here[:5],
    }


def cmd_diff(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.outputs import staged_folder
    from harness.report.checks import write_json_atomic

    topologies, records, speed = _inputs(args, [args.oracle, *args.topology])
    names = [t.name for t in topologies]
    if len(set(names)) != len(names):
        raise InputError(f"topology names must differ, got {', '.join(names)}",
                         key="--topology")
    folder = _report_dir(args, "diff")
    console = Console()
    console.print(f"diff: {len(records)} requests of {args.trace} through "
                  f"{', '.join(names[1:])}, oracle {names[0]}")
    with staged_folder(folder) as work:
        sections = []
        for t in topologies:
            section = replay_through(t, records, speed=speed, concurrency=args.concurrency,
                                     runtime=args.runtime,
                                     history=work / f"history-{t.name}.jsonl",
                                     console=console)
            section["history"] = str(folder / f"history-{t.name}.jsonl")
            sections.append(section)
        oracle, others = sections[0], sections[1:]
        comparisons = [compare(oracle, other) for other in others]
        differs = any(c["broken_here_only"] for c in comparisons)
        write_json_atomic(work / "report.json", {
            "schema_version": 1, "kind": "diff", "trace": str(args.trace),
            "speed": "max" if math.isinf(speed) else speed, "concurrency": args.concurrency,
            "runtime": args.runtime, "seed": None, "oracle": oracle, "replays": others,
            "comparisons": comparisons, "verdict": "differs" if differs else "same",
        })
    table = Table(title=f"against the oracle {names[0]} "
                        f"({oracle['summary']['broken_sessions']} sessions broke there)",
                  box=None)
    for column in ("topology", "broke only here", "how", "broke only in oracle",
                   "busiest replica"):
        table.add_column(column)
    for c in comparisons:
        how = ", ".join(f"{n} {k}" for k, n in sorted(c["broken_here_only_by_kind"].items()))
        table.add_row(c["topology"], str(c["broken_here_only"]), how or "-",
                      str(c["broken_in_oracle_only"]),
                      f"{c['max_load_share']:.0%} (oracle {c['oracle_max_load_share']:.0%})")
    console.print(table)
    for c in comparisons:
        for b in c["examples"]:
            console.print(f"  {c['topology']}: {b['session']} broke at request "
                          f"{b['seq'] + 1} ({b['kind']}): {b['detail']}")
    console.print(f"report: {folder / 'report.json'}")
    return 1 if differs else 0


# shrink's own exit code: not a failure (1: no regression could be made of a failure that
# showed), not bad input (2): the property holds, there is no failure to shrink.
NOTHING_TO_SHRINK = 4


def cmd_shrink(args: argparse.Namespace) -> int:
    import re
    import shlex
    import sys

    from rich.console import Console

    from harness.balancers import get_adapter
    from harness.cli import ROOT
    from harness.report.checks import write_text_atomic
    from harness.runtime import start
    from harness.topology import load_topology
    from harness.trace.format import TraceHeader
    from harness.trace.io import TraceWriter, read_trace
    from harness.trace.regression import judge, runs_needed, test_source
    from harness.trace.shrink import ddmin, parse_property

    try:
        prop = parse_property(args.prop)
    except ValueError as exc:
        raise InputError(str(exc), key="--property") from None
    if args.runs < 1:
        raise InputError("expected at least 1", key="--runs")
    bad = load_topology(args.topology)
    fixed = load_topology(args.fixed) if args.fixed else None
    for t in filter(None, (bad, fixed)):
        get_adapter(t.kind).which()
    with read_trace(args.trace) as reader:
        header, records = reader.header, list(reader)
    if not records:
        raise InputError("the trace has no requests", file=args.trace)
    name = args.name or f"{Path(args.trace).stem}-{bad.name}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}", name):
        raise InputError("expected letters, digits, '.', '_' and '-'", key="--name")
    out_dir = Path(args.out_dir or ROOT / "suites" / "regressions")
    trace_out = out_dir / f"{name}.jsonl"
    test_out = out_dir / f"test_{name.replace('-', '_').replace('.', '_')}.py"
    if not args.force and (trace_out.exists() or test_out.exists()):
        raise InputError("a regression of that name exists; use --name or --force",
                         file=str(test_out))
    from harness.outputs import check_output

    for path in (trace_out, test_out):
        check_output(path, "--out-dir" if args.out_dir else "--name", force=True,
                     inputs=[args.trace])

    console = Console()
    tests = 0

    def fails(cluster, candidate: list) -> bool:
        nonlocal tests
        tests += 1
        outcomes = (not judge(cluster, candidate, prop)[0] for _ in range(args.runs))
        return all(outcomes) if args.every_run else any(outcomes)

    console.print(f"shrink: {len(records)} requests of {args.trace} on {bad.name}, property "
                  f"'{prop}'")
    with start(bad, args.runtime) as cluster, console.status("replaying") as status:
        if not fails(cluster, records):
            console.print(f"the property holds on the whole trace through {bad.name}: "
                          "nothing to shrink")
            return NOTHING_TO_SHRINK
        by_session: dict[str, list] = {}
        for record in records:
            by_session.setdefault(record.session, []).append(record)

        def progress(what: str):
            return lambda size, _: status.update(f"{what}: {size} left after {tests} replays")

        sessions = ddmin(list(by_session), lambda keep: fails(cluster, [
            r for r in records if r.session in set(keep)]), progress("sessions"))
        kept = [r for r in records if r.session in set(sessions)]
        minimal = ddmin(kept, lambda keep: fails(cluster, keep), progress("requests"))
        reproduced = sum(not judge(cluster, minimal, prop)[0] for _ in range(RERUNS))
    console.print(f"{len(records)} -> {len(minimal)} requests in {len(sessions)} session(s) "
                  f"after {tests} replays; the minimal trace fails {reproduced} of {RERUNS} "
                  f"reruns")
    if reproduced == 0:
        console.print("the minimal trace does not fail again (the failure depends on "
                      "placement or timing): shrink with --runs 3 --every-run; nothing "
                      "written")
        return 1
    runs = runs_needed(reproduced, RERUNS)
    runs_why = (f"replays; the trace failed {reproduced} of {RERUNS} times when shrunk, so "
                f"{runs} miss it about once in 10^4" if reproduced < RERUNS else
                "replays: the failure shows in one at least")
    if reproduced < RERUNS:
        console.print(f"the failure does not show in every replay: the regression replays "
                      f"up to {runs} times")
    if fixed is not None:
        checks = max(3, runs)
        with start(fixed, args.runtime) as cluster:
            held = sum(judge(cluster, minimal, prop)[0] for _ in range(checks))
        if held < checks:
            console.print(f"the property fails on the fixed topology {fixed.name} too "
                          f"({checks - held} of {checks} runs); nothing written")
            return 1
        console.print(f"the property holds on {fixed.name} ({checks} of {checks} runs)")
    shrunk_header = TraceHeader(start=header.start, source={
        **header.source, "shrunk_from": str(args.trace), "property": str(prop)},
        redacted=header.redacted, session_key=header.session_key)
    command = shlex.join(["stickler", *sys.argv[1:]]) if sys.argv[1:2] == ["shrink"] else \
        f"stickler shrink {args.trace} --topology {args.topology} --property '{args.prop}'"
    source = test_source(trace_name=trace_out.name, prop=args.prop, bad=args.topology,
                         bad_name=bad.name, fixed=args.fixed,
                         fixed_name=fixed.name if fixed else None, source=str(args.trace),
                         original=len(records), size=len(minimal), command=command,
                         runs=runs, runs_why=runs_why)
    with TraceWriter(trace_out, shrunk_header) as writer:
        for record in minimal:
            writer.write(record)
    write_text_atomic(test_out, source)
    console.print(f"trace: {trace_out}\ntest:  {test_out}")
    return 0
