"""The load driver's runner (I/O shell): Locust against a cluster, with a fault schedule.

    result = run_load(cluster, load_profile("fixtures/profiles/smoke.yaml"), duration=30,
                      seed=7, workdir=Path("out"), faults=[FaultStep(10, "kill", "r1")])

Locust runs as a subprocess (its own process group, under the reaper's guard shell because
`--processes` forks workers that PR_SET_PDEATHSIG does not reach) with the Shopper of
locustfile.py; this thread runs the fault schedule meanwhile. Afterwards the workers'
history files and the fault records are merged into workdir/history.jsonl, sorted by t.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from harness.errors import SticklerError
from harness.history import FaultRecord, Record, read_history, to_json
from harness.runtime import net, reaper, wait
from harness.traffic.profile import Profile, population

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
ROOT = Path(__file__).resolve().parents[2]
OPS = {"kill": "kill", "pause": "pause", "resume": "resume", "restart": "restart",
       "add": "add_replica", "remove": "remove_replica", "drain": "drain",
       "undrain": "undrain", "disconnect": "disconnect", "reconnect": "reconnect"}
START_GRACE = 60.0  # s Locust may take beyond `duration` to start and finish
STOP_GRACE = 5.0  # s between SIGTERM and SIGKILL
FAILURES_EXIT = 1  # Locust's exit code when some requests failed: a result, not an error


@dataclass
class FaultStep:
    at: float  # seconds after the load starts (STICKLER_T0)
    op: str  # kill, pause, resume, restart, add, remove
    target: str | None = None  # replica id; None for add (the cluster picks one)


@dataclass
class LoadResult:
    history: Path  # merged JSONL: requests of all workers and fault records, sorted by t
    records: list[Record]
    duration: float
    seed: int
    users: int
    locust_exit_code: int
    stats: dict[str, Any] = field(default_factory=dict)  # Locust's totals


def run_load(cluster: Any, profile: Profile, *, duration: float, seed: int, workdir: Path,
             processes: int = 1, faults: Sequence[FaultStep] = (), web: bool = False,
             progress: Callable[[float, int], None] | None = None) -> LoadResult:
    """Run `profile` against `cluster` for `duration` s (Locust's --run-time, whole seconds)
    while applying `faults`; leaves no process behind, however it ends."""
    net.ensure_loopback(urlsplit(cluster.url).hostname or "")
    schedule = sorted(_check_schedule(faults, duration), key=lambda s: s.at)
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in [*workdir.glob("history-*.jsonl"), *workdir.glob("started-*"),
                  workdir / "faults.jsonl", workdir / "locust-stats.json"]:
        stale.unlink(missing_ok=True)
    pop = workdir / "population.json"
    pop.write_text(json.dumps({"profile": profile.to_dict(), "seed": seed,
                               "users": [u.to_dict() for u in population(profile, seed)]}))
    reaper.install()
    t0 = time.time()
    env = {**os.environ, "STICKLER_POPULATION": str(pop), "STICKLER_HISTORY_DIR": str(workdir),
           "STICKLER_T0": repr(t0), "STICKLER_WORKERS": str(processes),
           "STICKLER_TRANSPORT": getattr(getattr(cluster, "topology", None), "client_ip",
                                         "source"),
           "STICKLER_TLS_CA": getattr(getattr(cluster, "topology", None), "tls_ca",
                                      None) or "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    cmd = _command(cluster.url, profile, duration, processes, web, workdir)
    log = workdir / "locust.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(reaper.guarded(cmd), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=workdir, env=env,
                                start_new_session=True, preexec_fn=reaper.guard_setup)
    reaper.track_group(proc.pid)
    try:
        with (workdir / "faults.jsonl").open("a", encoding="utf-8") as fault_log:
            _supervise(proc, cluster, schedule, t0, duration, fault_log, workdir, progress)
    finally:
        _stop(proc)
        for marker in workdir.glob("started-*"):  # the schedule's, not the report's
            marker.unlink(missing_ok=True)
    elapsed = time.time() - t0
    code = proc.returncode
    stats = workdir / "locust-stats.json"  # written at a normal shutdown only
    if code not in (0, FAILURES_EXIT) or not stats.exists():
        tail = log.read_text(errors="replace")[-3000:]
        raise SticklerError(f"Locust exited with code {code}; {log} ends with:\n{tail}")
    crashed = user_crash(log.read_text(errors="replace"))
    if crashed:  # Locust carries on with fewer users: the population would not be the profile's
        raise SticklerError(f"a simulated user crashed, so the run does not follow the "
                            f"profile ({profile.name}); {log}:\n{crashed}")
    records = _merge(workdir, workdir / "history.jsonl")
    if progress:
        progress(elapsed, sum(r.type == "request" for r in records))
    return LoadResult(history=workdir / "history.jsonl", records=records, duration=elapsed,
                      seed=seed, users=profile.users, locust_exit_code=code,
                      stats=_stats(stats))


def user_crash(log_text: str) -> str:
    """The first traceback of a Locust user that died of an exception ("<Greenlet ...>
    failed with ..."), or ""."""
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if "run_user(" in line and " failed with " in line:
            start = max((j for j in range(i) if lines[j].startswith("Traceback")), default=i)
            return "\n".join(lines[start:i + 1])[-3000:]
    return ""


def _check_schedule(faults: Sequence[FaultStep], duration: float) -> list[FaultStep]:
    for step in faults:
        if step.op not in OPS:
            raise ValueError(f"unknown fault op {step.op!r}; expected one of {', '.join(OPS)}")
        if step.target is None and step.op != "add":
            raise ValueError(f"fault {step.op} at {step.at} s needs a target replica")
        if not 0 <= step.at < duration:
            raise ValueError(f"fault {step.op} at {step.at} s is outside the run (0 to "
                             f"{duration} s)")
    return list(faults)


def _command(url: str, profile: Profile, duration: float, processes: int, web: bool,
             workdir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", url,
           "-u", str(profile.users), "-r", f"{profile.spawn_rate:g}",
           "--run-time", f"{max(1, round(duration))}s",
           "--json-file", str(workdir / "locust-stats")]  # Locust appends .json
    if web:
        port = net.free_port("127.0.0.1")
        cmd += ["--autostart", "--autoquit", "0", "--web-host", "127.0.0.1",
                "--web-port", str(port)]
        print(f"Locust web UI: http://127.0.0.1:{port}/ (stops after {duration:g} s)",
              flush=True)
    else:
        cmd += ["--headless", "--only-summary"]
    if processes > 1:
        # A private port on loopback: the default (*:5557) is open to the network, and a
        # second run's workers would join the first run's master.
        port = str(net.free_port("127.0.0.1"))
        cmd += ["--processes", str(processes), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", port, "--master-port", port]
    return cmd


def _supervise(proc: subprocess.Popen, cluster: Any, schedule: list[FaultStep], t0: float,
               duration: float, fault_log: IO[str], workdir: Path,
               progress: Callable[[float, int], None] | None) -> None:
    """Apply the fault schedule and report progress until Locust exits. The schedule counts
    from the moment the first user started, not from Locust's launch: its start-up takes
    seconds on a loaded machine, and a fault before any traffic would hit no session."""
    pending = list(schedule)
    counter = _LineCounter(workdir)
    deadline = t0 + duration + START_GRACE
    next_tick = t0 + 1.0
    began: float | None = None
    while proc.poll() is None:
        now = time.time()
        if now > deadline:
            raise SticklerError(f"Locust did not finish within {duration + START_GRACE:g} s; "
                                f"see {workdir / 'locust.log'}")
        if began is None and pending:
            began = _traffic_began(workdir)
        while pending and began is not None and now - began >= pending[0].at:
            _apply(cluster, pending.pop(0), t0, fault_log)
            now = time.time()
        if progress and now >= next_tick:
            progress(now - t0, counter.count())
            next_tick = max(next_tick + 1.0, now + 0.5)
        # The next fault's time, or soon again while the first user has not started.
        fault_due = [began + pending[0].at if began is not None else now + 0.05] \
            if pending else []
        wake = min([deadline, *([next_tick] if progress else []), *fault_due])
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=min(max(wake - time.time(), 0.005), 1.0))


def _traffic_began(workdir: Path) -> float | None:
    """When the first Locust user started (the earliest `started-<pid>` a process wrote)."""
    times = []
    for marker in workdir.glob("started-*"):
        with contextlib.suppress(OSError, ValueError):
            times.append(float(marker.read_text()))
    return min(times) if times else None


def _apply(cluster: Any, step: FaultStep, t0: float, out: IO[str]) -> None:
    started = time.time()
    method = getattr(cluster, OPS[step.op])
    result = method() if step.target is None else method(step.target)
    target = result if step.op == "add" else step.target
    # t is when the fault is complete: later requests can no longer reach the old state.
    record = FaultRecord(t=time.time() - t0, op=step.op, target=str(target),
                         detail=f"scheduled at {step.at:g} s", began=started - t0)
    out.write(to_json(record) + "\n")
    out.flush()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the Locust group (its guard SIGKILLs the rest), then SIGKILL what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE)
    reaper.kill_group(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    # Locust itself is the guard's child, reaped by init after the guard dies: wait for it.
    with contextlib.suppress(TimeoutError):
        wait.until(lambda: not _live_members(proc.pid), 5.0, "Locust to exit")
    reaper.untrack_group(proc.pid)


def _live_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that are not zombies, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rfind(")") + 2:].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry.name))
    return members


class _LineCounter:
    """Requests written so far, counted from the workers' history files as they grow
    (an estimate: the workers buffer up to 64 KiB each)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.offsets: dict[Path, int] = {}
        self.lines = 0

    def count(self) -> int:
        for path in self.workdir.glob("history-*.jsonl"):
            with contextlib.suppress(OSError), path.open("rb") as f:
                f.seek(self.offsets.get(path, 0))
                chunk = f.read()
                self.offsets[path] = f.tell()
                self.lines += chunk.count(b"\n")
        return self.lines


def _merge(workdir: Path, target: Path) -> list[Record]:
    sources = [*sorted(workdir.glob("history-*.jsonl")), workdir / "faults.jsonl"]
    records = [r for path in sources if path.exists() for r in read_history(path)]
    records.sort(key=lambda r: r.t)
    with target.open("w", encoding="utf-8") as out:
        out.writelines(to_json(r) + "\n" for r in records)
    return records


def _stats(path: Path) -> dict[str, Any]:
    """Totals over Locust's per-request-name entries (its --json-file output)."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    requests = sum(e["num_requests"] for e in entries)
    failures = sum(e["num_failures"] for e in entries)
    starts = [e["start_time"] for e in entries if e.get("start_time")]
    ends = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    span = max(ends) - min(starts) if starts and ends else 0.0
    return {"requests": requests, "failures": failures,
            "rps": requests / span if span > 0 else 0.0,
            "by_name": {f"{e['method']} {e['name']}": e["num_requests"] for e in entries}}
