"""The controller's side of a concurrent run (I/O shell around plan.Scheduler): worker
processes, the groups sent to them, their answers, and the histories they write.

    pool = WorkerPool(scheduler, requests, seed=7, runtime="processes",
                      history_dir=Path("reports/x/histories"), on_start=..., on_result=...)
    pool.run()

Workers start lazily and at most as many as there are groups. Each group writes its histories
into a directory of its own, which is appended to history_dir when the group ends, so the
files look as a serial run leaves them. A worker that dies turns the check it was running
into an error (with the tail of its stderr) and its unstarted checks go back to the queue
for a new worker. However run() ends, no worker outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.check import CheckResult
from harness.parallel.plan import Group, Scheduler
from harness.runtime import reaper

STOP_GRACE_S = 30.0  # a worker stopping its cluster after SIGTERM
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen
    stderr_path: Path
    group: Group | None = None
    group_dir: Path | None = None
    started: list[str] = field(default_factory=list)  # keys of the group begun so far
    answered: set[str] = field(default_factory=set)


class WorkerPool:
    def __init__(self, scheduler: Scheduler, requests: dict[str, dict[str, Any]], *, seed: int,
                 runtime: str, history_dir: Path,
                 on_start: Callable[[str], None] = lambda key: None,
                 on_result: Callable[[CheckResult], None] = lambda result: None,
                 on_tick: Callable[[], None] = lambda: None,
                 on_group: Callable[[Group, float, float], None] = lambda g, wall, cpu: None,
                 should_stop: Callable[[], bool] = lambda: False):
        self.scheduler = scheduler
        self.requests = requests  # key -> what a worker needs to find the check
        self.seed = seed
        self.runtime = runtime
        self.history_dir = history_dir
        self.on_start, self.on_result, self.on_tick = on_start, on_result, on_tick
        self.on_group = on_group  # a group ended: its wall and CPU seconds
        self.should_stop = should_stop
        self.events: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self.workers: dict[int, _Worker] = {}
        self._next_group = 0
        self._next_worker = 0

    def run(self) -> None:
        reaper.install()  # SIGTERM and SIGHUP become exits here too, so `finally` runs
        scratch = Path(tempfile.mkdtemp(prefix="stickler-jobs-"))
        reaper.claim_dir(scratch)
        self.scratch = scratch
        try:
            self._loop()
            self._stop_all(graceful=self.scheduler.finished)
        finally:
            self._stop_all(graceful=False)
            shutil.rmtree(scratch, ignore_errors=True)
            reaper.untrack_dir(scratch)

    def _loop(self) -> None:
        while not self.scheduler.finished and not self.should_stop():
            self._dispatch()
            try:
                index, message = self.events.get(timeout=0.25)
            except queue.Empty:
                self.on_tick()
                continue
            self._handle(index, message)
            self.on_tick()

    def _dispatch(self) -> None:
        while True:
            idle = next((w for w in self.workers.values() if w.group is None), None)
            busy = sum(1 for w in self.workers.values() if w.group is not None)
            if idle is None and busy >= self.scheduler.workers:
                return
            group = self.scheduler.take()
            if group is None:
                return
            worker = idle or self._spawn()
            self._send(worker, group)

    def _spawn(self) -> _Worker:
        index = self._next_worker
        self._next_worker += 1
        stderr_path = self.scratch / f"worker-{index}.stderr"
        with open(stderr_path, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness.parallel.worker"], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                env={reaper.COMMAND_PID_ENV: str(os.getpid()), **os.environ,
                     "PYTHONUNBUFFERED": "1"},
                preexec_fn=reaper.guard_setup)
        worker = _Worker(index, proc, stderr_path)
        self.workers[index] = worker
        threading.Thread(target=self._read, args=(index, proc.stdout), daemon=True).start()
        return worker

    def _read(self, index: int, stream: IO[str]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                self.events.put((index, json.loads(line)))
        self.events.put((index, None))

    def _send(self, worker: _Worker, group: Group) -> None:
        self._next_group += 1
        worker.group, worker.started, worker.answered = group, [], set()
        worker.group_dir = self.scratch / f"group-{self._next_group}"
        request = {"op": "group", "group": self._next_group, "seed": self.seed,
                   "runtime": self.runtime, "history_dir": str(worker.group_dir),
                   "checks": [self.requests[j.key] for j in group.jobs]}
        try:
            worker.proc.stdin.write(json.dumps(request) + "\n")
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: its EOF is on the way and requeues the group

    def _handle(self, index: int, message: dict[str, Any] | None) -> None:
        worker = self.workers.get(index)
        if worker is None:
            return
        if message is None:
            self._lost(worker)
        elif message["op"] == "start":
            worker.started.append(message["key"])
            self.on_start(message["key"])
        elif message["op"] == "result":
            result = CheckResult.from_dict(message["result"])
            worker.answered.add(result.key)
            self.on_result(result)
        elif message["op"] == "done" and worker.group is not None:
            self.on_group(worker.group, message.get("wall_s", 0.0), message.get("cpu_s", 0.0))
            self._merge_histories(worker.group_dir)
            self.scheduler.done(worker.group)
            worker.group = None

    def _lost(self, worker: _Worker) -> None:
        """A worker exited: its running check is an error, its untouched ones run again."""
        del self.workers[worker.index]
        code = worker.proc.wait()
        if worker.group is None:
            return
        tail = _tail(worker.stderr_path)
        for key in worker.started:
            if key not in worker.answered:
                self.on_result(CheckResult(key, None, error=(
                    f"the worker process running this check exited with code {code}; "
                    f"the end of its stderr:\n{tail}")))
        untouched = [j for j in worker.group.jobs if j.key not in worker.started]
        self._merge_histories(worker.group_dir)
        self.scheduler.done(worker.group)
        self.scheduler.requeue(untouched)

    def _merge_histories(self, group_dir: Path | None) -> None:
        if group_dir is None or not group_dir.is_dir():
            return
        self.history_dir.mkdir(parents=True, exist_ok=True)
        for part in sorted(group_dir.glob("*.jsonl")):
            with open(self.history_dir / part.name, "ab") as out, open(part, "rb") as src:
                shutil.copyfileobj(src, out)
        shutil.rmtree(group_dir, ignore_errors=True)

    def _stop_all(self, graceful: bool) -> None:
        workers = [w for w in self.workers.values() if w.proc.poll() is None]
        for w in workers:
            with contextlib.suppress(OSError, ValueError):
                if graceful:
                    w.proc.stdin.write(json.dumps({"op": "stop"}) + "\n")
                    w.proc.stdin.flush()
                w.proc.stdin.close()
            if not graceful:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        if not graceful:
            self.workers.clear()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no stderr)"
