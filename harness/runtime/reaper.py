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
import threading
from pathlib import Path

_lock = threading.Lock()
_groups: set[int] = set()
_dirs: set[Path] = set()
_installed = False
PR_SET_PDEATHSIG = 1


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def install() -> None:
    """Register the exit hook and the SIGTERM handler (once, from the main thread)."""
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(reap_all)
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_exit)


def child_setup() -> None:
    """preexec_fn for children: die with the parent (Linux), even if it is SIGKILLed."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


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


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; paused (SIGSTOPped) members die too."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap_all() -> None:
    with _lock:
        groups, dirs = list(_groups), list(_dirs)
        _groups.clear()
        _dirs.clear()
    for pgid in groups:
        kill_group(pgid)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)
