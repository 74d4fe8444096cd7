"""Process helpers shared by the integration tests (reading /proc, signals for children)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import NamedTuple


class Proc(NamedTuple):
    cmdline: str
    cwd: str
    ppid: int


def ancestors(pid: int | None = None) -> set[int]:
    """`pid` (default: this process) and its parents: their command lines may mention
    anything."""
    pids, pid = set(), pid or os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2:].split()[1])
    return pids


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether `ancestor` is a parent, grandparent, ... of `pid`."""
    return pid != ancestor and ancestor in ancestors(pid)


def default_sigint() -> None:
    """preexec_fn: a shell may start us with SIGINT ignored, and Python would then ignore
    Ctrl-C in the child; give it the disposition it has in an interactive terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


RUN_MARK = "STICKLER_TEST_RUN"  # set in the environment of the runs a test starts


def _environ_has(pid: int | str, mark: bytes) -> bool:
    try:
        return mark in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def processes(marker: str, run: str | None = None) -> dict[int, Proc]:
    """Live processes (not zombies) whose command line or working directory mentions
    `marker`, except this process and its parents. The cwd catches processes that rewrite
    their title (`nginx: worker process`): every cluster child runs in the cluster's workdir.
    With `run`, only the processes of the run started with RUN_MARK=run in its environment
    (or their children: NGINX workers drop the environment), so that other harness runs on
    the same machine do not count."""
    assert marker, "an empty marker would match everything"
    skip = ancestors()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone already
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z" and (marker in cmdline or marker in cwd):
            if run is not None:
                mark = f"{RUN_MARK}={run}".encode()
                if not (_environ_has(entry.name, mark) or _environ_has(fields[1], mark)):
                    continue
            found[int(entry.name)] = Proc(cmdline, cwd, int(fields[1]))
    return found
