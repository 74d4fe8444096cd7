"""The `stickler` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from harness import __version__
from harness.errors import InputError, SticklerError

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"
REPORTS = ROOT / "reports"


def _suite_files(names: list[str]) -> list[str]:
    available = sorted(p.stem.removeprefix("test_") for p in SUITES.glob("test_*.py"))
    if not names:
        return [str(SUITES / f"test_{n}.py") for n in available]
    for name in names:
        if name not in available:
            raise InputError(f"unknown suite {name!r}; expected one of: {', '.join(available)}",
                             key="--suite")
    return [str(SUITES / f"test_{n}.py") for n in names]


def cmd_conformance(args: argparse.Namespace) -> int:
    from harness.balancers import ADAPTERS
    from harness.expectations import EXPECTATIONS_DIR, load_expectations
    from harness.topology import load_topology

    # Validate every input before anything starts, so bad input costs nothing.
    for kind in args.balancer:
        if kind not in ADAPTERS:
            raise InputError(f"unknown balancer {kind!r}; expected one of: "
                             f"{', '.join(sorted(ADAPTERS))}", key="--balancer")
    topologies = [load_topology(f) for f in args.topology]
    runtimes = ["processes", "containers"] if args.runtime == "all" else [args.runtime]
    if "processes" in runtimes:
        for kind in {t.kind for t in topologies} or set(args.balancer) or set(ADAPTERS):
            ADAPTERS[kind].which()
    if "containers" in runtimes:
        from harness.runtime import docker_env

        docker_env.client().close()  # fail early, saying how to start a daemon
    for kind in ADAPTERS:  # a broken expectation file is named before anything runs
        load_expectations(EXPECTATIONS_DIR / f"{kind}.yaml")
    files = _suite_files(args.suite)
    if args.jobs is not None and args.jobs != "auto" and \
            not (args.jobs.isdigit() and int(args.jobs) >= 1):
        raise InputError(f"expected a whole number of at least 1 or 'auto', got {args.jobs!r}",
                         key="--jobs")

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base_dir = Path(args.report_dir or REPORTS / stamp)
    dirs = {r: base_dir / r if len(runtimes) > 1 else base_dir for r in runtimes}
    for report_dir in dirs.values():
        if (report_dir / "report.json").exists():
            raise InputError("a report is already there; choose another --report-dir",
                             file=str(report_dir / "report.json"))
    code = 0
    for runtime, report_dir in dirs.items():
        code = max(code, _conformance_run(args, files, runtime, report_dir))
        if code == 130:
            break
    return code


def _conformance_run(args: argparse.Namespace, files: list[str], runtime: str,
                     report_dir: Path) -> int:
    import pytest

    from harness.report.table import print_slowest, print_table

    report_dir.mkdir(parents=True, exist_ok=True)
    pytest_args = [*files, "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                   "-p", "no:cacheprovider", "--report-dir", str(report_dir),
                   "--junitxml", str(report_dir / "junit.xml"), "--runtime", runtime,
                   "-q" if not args.verbose else "-v", "--tb=line" if not args.verbose else
                   "--tb=short"]
    for f in args.topology:
        pytest_args += ["--topology", str(Path(f).resolve())]
    for kind in args.balancer:
        pytest_args += ["--balancer", kind]
    if args.seed is not None:
        pytest_args += ["--seed", str(args.seed)]
    if args.jobs is not None:
        pytest_args += ["--jobs", args.jobs]
    if args.k:
        pytest_args += ["-k", args.k]
    if args.exitfirst:
        pytest_args.append("-x")
    code = pytest.main(pytest_args)
    report_file = report_dir / "report.json"
    if not report_file.exists():
        print(f"stickler: no report was written (pytest exit code {int(code)})",
              file=sys.stderr)
        return 2 if code == pytest.ExitCode.USAGE_ERROR else 1
    report = json.loads(report_file.read_text())
    print_table(report)
    print_slowest(report)
    print(f"report: {report_file}\njunit:  {report_dir / 'junit.xml'}")
    if code == pytest.ExitCode.INTERRUPTED:
        from harness.suite import STOPPED_BY

        return 128 + (STOPPED_BY[-1] if STOPPED_BY else signal.SIGINT)
    if code == pytest.ExitCode.NO_TESTS_COLLECTED or not report["checks"]:
        print("stickler: no check ran (do the filters match any topology?)", file=sys.stderr)
        return 1
    return 0 if report["summary"]["pass"] == report["summary"]["total"] and code == 0 else 1


def cmd_topology(args: argparse.Namespace) -> int:
    from harness.balancers import Layout, get_adapter
    from harness.topology import load_topology

    topologies = [load_topology(f) for f in args.files]  # all validated before any output
    for topology in topologies:
        if args.action == "validate":
            mechanism = topology.mode or topology.config.mechanism
            print(f"{topology.source}: ok ({topology.kind} {mechanism}, "
                  f"{len(topology.replicas)} replicas, judged as "
                  f"{topology.expect or 'no mechanism: the requirements only'})")
        else:
            extra = topology.config.listeners - 1 if topology.config is not None else 0
            layout = Layout.example(topology.replica_ids, Path("/tmp/stickler"), extra)
            print(get_adapter(topology.kind).render(topology, layout), end="")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Start a topology and keep it running until Ctrl-C, for poking at by hand."""
    from harness import runtime
    from harness.topology import load_topology

    if bool(args.topology) == bool(args.topology_option):
        raise InputError("expected one topology: `stickler up FILE` or `stickler up "
                         "--topology FILE`", key="--topology")
    topology = load_topology(args.topology or args.topology_option)
    with runtime.start(topology, args.runtime) as cluster:
        mechanism = topology.mode or topology.config.mechanism
        print(f"{topology.name}: {topology.kind} ({mechanism}) at {cluster.url}")
        if cluster.topology.client_ip != topology.client_ip:
            print(f"  client addresses: {cluster.topology.client_ip} (the {args.runtime} "
                  f"runtime cannot carry {topology.client_ip} addresses)")
        for rid in cluster.replica_ids:
            print(f"  replica {rid}")
        if getattr(cluster, "store", None) is not None:
            print(f"  session store: redis at {cluster.store.endpoint.address}"
                  + (" (on the cluster network)" if args.runtime == "containers" else ""))
        insecure = "k" if topology.tls else ""  # the user's certificate is not checked
        print(f"try: curl -si{insecure} -c /tmp/jar -b /tmp/jar -X POST "
              f"'{cluster.url}/cart?item=tea'")
        print("Ctrl-C stops everything.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stickler", description="Test load-balancer session affinity end to end.")
    parser.add_argument("--version", action="version", version=f"stickler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    conf = sub.add_parser("conformance", help="run conformance suites and write a report")
    conf.add_argument("--topology", action="append", default=[], metavar="FILE",
                      help="topology YAML (repeatable; default: fixtures/topologies/*.yaml)")
    conf.add_argument("--balancer", action="append", default=[], metavar="KIND",
                      help="only this balancer kind (repeatable)")
    conf.add_argument("--suite", action="append", default=[], metavar="NAME",
                      help="only this suite, e.g. stickiness (repeatable)")
    conf.add_argument("--runtime", default="processes",
                      choices=["processes", "containers", "all"],
                      help="how clusters are started (default: processes; all: both, "
                           "reports in <report-dir>/<runtime>/)")
    conf.add_argument("--seed", type=int, default=None, help="rerun with this seed")
    conf.add_argument("--jobs", "-j", default=None, metavar="N",
                      help="checks run at once (default: auto, from the cores and what the "
                           "checks need; 1: one by one, in order)")
    conf.add_argument("--report-dir", default=None, metavar="DIR",
                      help="where to write the report (default: reports/<timestamp>/)")
    conf.add_argument("-k", default=None, metavar="EXPR", help="pytest -k filter on check ids")
    conf.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    conf.add_argument("-v", "--verbose", action="store_true",
                      help="one line per check as it ends")
    conf.set_defaults(func=cmd_conformance)

    topo = sub.add_parser("topology", help="validate a topology or show its balancer config")
    topo.add_argument("action", choices=["validate", "render"],
                      help="validate: check each file; render: print the balancer config")
    topo.add_argument("files", nargs="+", metavar="FILE", help="topology YAML files")
    topo.set_defaults(func=cmd_topology)

    from harness.load_cli import add_parser as add_load_parser

    add_load_parser(sub)

    from harness.containers_cli import add_parser as add_containers_parser

    add_containers_parser(sub)

    from harness.trace_cli import add_parser as add_trace_parser

    add_trace_parser(sub)

    from harness.replay_cli import add_parsers as add_replay_parsers

    add_replay_parsers(sub)

    from harness.record_cli import add_parser as add_record_parser

    add_record_parser(sub)

    from harness.config_cli import add_parsers as add_config_parsers

    add_config_parsers(sub)

    up = sub.add_parser("up", help="start a topology and keep it running until Ctrl-C")
    up.add_argument("topology", metavar="FILE", nargs="?", help="a topology YAML file")
    up.add_argument("--topology", dest="topology_option", metavar="FILE",
                    help="the same, as the other commands spell it")
    up.add_argument("--runtime", default="processes", choices=["processes", "containers"],
                    help="where the cluster runs: processes (default) or containers")
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    from harness.runtime import reaper

    args = build_parser().parse_args(argv)
    # SIGTERM and SIGHUP unwind like Ctrl-C from the start (reading a config runs the
    # balancer's own check in a temp dir), so every command cleans up what it made.
    reaper.install()
    try:
        return args.func(args)
    except SticklerError as exc:
        print(f"stickler: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("stickler: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`stickler ... | head`): stop quietly, as other tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
