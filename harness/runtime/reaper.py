"""Last-resort cleanup: whatever a run started is gone when the run ends, however it ends.

Clusters register their process groups and temp dirs here. `reap_all` runs at interpreter
exit; SIGTERM is turned into SystemExit so `with` blocks and pytest teardowns unwind first.
Children also get PR_SET_PDEATHSIG, so even a SIGKILLed harness takes its direct children
with it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from harness.runtime.wait import pid_alive

_lock = threading.Lock()
_groups: set[int] = set()
_dirs: set[Path] = set()
_cleanups: dict[str, Callable[[], None]] = {}  # e.g. a container cluster's stop()
_installed = False
PR_SET_PDEATHSIG = 1


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def default_handler(handler: object) -> bool:
    """Whether a signal's handler is the default or the reaper's (which a caller with its
    own way of stopping, such as pytest's KeyboardInterrupt, may replace)."""
    return handler in (signal.SIG_DFL, None, _raise_exit)


OWNER_FILE = "stickler-owner.pid"
# Set by a concurrent run for its workers: the pid of the `stickler` command they serve.
COMMAND_PID_ENV = "STICKLER_COMMAND_PID"


def claim_dir(path: Path) -> None:
    """Mark a run's temp dir as ours, so a later run can tell it from a live run's."""
    (path / OWNER_FILE).write_text(str(os.getpid()))
    track_dir(path)


def sweep_stale_dirs(parent: Path | None = None) -> list[Path]:
    """Remove temp dirs left by runs that were SIGKILLed (their owner process is gone)."""
    removed = []
    for owner in Path(parent or tempfile.gettempdir()).glob(f"stickler-*/{OWNER_FILE}"):
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(owner.parent, ignore_errors=True)
            removed.append(owner.parent)
    return removed


def install() -> None:
    """Register the exit hook and the SIGTERM and SIGHUP handlers (once, from the main
    thread), and sweep temp dirs that SIGKILLed runs could not remove."""
    global _installed
    if _installed:
        return
    _installed = True
    sweep_stale_dirs()
    atexit.register(reap_all)
    if threading.current_thread() is threading.main_thread():
        # SIGHUP too: a closed terminal (or tmux kill-server) must clean up like SIGTERM.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                signal.signal(signum, _raise_exit)


def _die_with_parent(signum: int) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
    except OSError:
        pass


def child_setup() -> None:
    """preexec_fn for single-process children: SIGKILL when the harness dies (Linux).

    The kernel sends it when the *thread* that spawned the child ends, so clusters are
    started and changed from one long-lived thread (the main thread in pytest and the CLI).
    """
    _die_with_parent(signal.SIGKILL)


def guard_setup() -> None:
    """preexec_fn for the guard shell around a balancer: SIGTERM when the harness dies."""
    _die_with_parent(signal.SIGTERM)


# A balancer's master forks workers, which PR_SET_PDEATHSIG does not reach. So balancers run
# under this shell: on SIGTERM (the harness died, or stop() asked) it SIGKILLs its whole
# process group, master and workers alike; otherwise it waits for the master and exits with it.
GUARD = 'trap "kill -9 0" TERM; "$@" & wait $!'


def guarded(cmd: list[str]) -> list[str]:
    return ["/bin/sh", "-c", GUARD, "stickler-guard", *cmd]


def track_group(pgid: int) -> None:
    with _lock:
        _groups.add(pgid)


def untrack_group(pgid: int) -> None:
    with _lock:
        _groups.discard(pgid)


def track_dir(path: Path) -> None:
    with _lock:
        _dirs.add(path)


def untrack_dir(path: Path) -> None:
    with _lock:
        _dirs.discard(path)


def track_cleanup(key: str, cleanup: Callable[[], None]) -> None:
    """Run `cleanup` at exit unless untracked first (for what is not a process or a dir)."""
    with _lock:
        _cleanups[key] = cleanup


def untrack_cleanup(key: str) -> None:
    with _lock:
        _cleanups.pop(key, None)


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; paused (SIGSTOPped) members die too."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap_all() -> None:
    with _lock:
        groups, dirs, cleanups = list(_groups), list(_dirs), list(_cleanups.values())
        _groups.clear()
        _dirs.clear()
        _cleanups.clear()
    for cleanup in cleanups:
        with contextlib.suppress(Exception):
            cleanup()
    for pgid in groups:
        kill_group(pgid)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)
