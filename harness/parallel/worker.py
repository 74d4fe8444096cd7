"""A worker process: runs the groups of checks its controller sends, one cluster at a time.

    python -m harness.parallel.worker        (started by harness.parallel.pool)

Requests arrive as JSON lines on stdin; answers go as JSON lines on the stdout this process
was started with, and anything else printed goes to stderr. A group's checks run in their
order on one ClusterPool, which is closed when the group ends, so a group is the life of a
cluster. SIGTERM and SIGINT unwind like Ctrl-C: the cluster is stopped before the exit.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from harness.check import Case, CheckResult, ClusterPool, checks_for, execute_check
from harness.report.checks import CheckLog
from harness.runtime import reaper
from harness.topology import Topology, load_topology


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def resolve(check: dict[str, Any], topologies: dict[str, Topology]) -> Case:
    """The Case a request names: topology file, suite, expectation id and runtime. One
    Topology object per file, so that the checks of a group share its cluster."""
    file = check["topology_file"]
    if file not in topologies:
        topologies[file] = load_topology(file)
    topology = topologies[file]
    for exp in checks_for(topology, check["suite"]):
        if exp.id == check["expectation"]:
            return Case(topology, exp, check["runtime"])
    raise LookupError(f"{file}: no expectation {check['expectation']!r} in suite "
                      f"{check['suite']!r}")


def cpu_seconds() -> float:
    """CPU of this process and of its children that have been waited for (the cluster's
    replicas, balancer and Locust once stopped)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_group(request: dict[str, Any], send) -> None:
    began_cpu, began = cpu_seconds(), time.monotonic()
    log = CheckLog(seed=request["seed"], runtime=request["runtime"])
    pool = ClusterPool(request["runtime"], log)
    topologies: dict[str, Topology] = {}
    history_dir = Path(request["history_dir"])
    try:
        for check in request["checks"]:
            send({"op": "start", "key": check["key"]})
            try:
                case = resolve(check, topologies)
            except Exception as e:  # a changed file between collection and run
                result = CheckResult(check["key"], None, error=f"{type(e).__name__}: {e}")
            else:
                result = execute_check(case, pool, request["seed"], history_dir, catch=True)
            result.key = check["key"]
            send({"op": "result", "result": result.to_dict()})
    finally:
        pool.close()
    send({"op": "done", "group": request["group"], "cpu_s": cpu_seconds() - began_cpu,
          "wall_s": time.monotonic() - began})


def main(stdin: IO[str] = sys.stdin) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # a stray print must not break the protocol
    sys.stdout = sys.stderr
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)  # the terminal closed: clean up all the same
    reaper.install()

    def send(message: dict[str, Any]) -> None:
        proto.write(json.dumps(message) + "\n")
        proto.flush()

    send({"op": "ready", "pid": os.getpid()})
    try:
        for line in stdin:
            request = json.loads(line)
            if request.get("op") == "stop":
                break
            run_group(request, send)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
