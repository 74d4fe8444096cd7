"""Process helpers shared by the integration tests (reading /proc, signals for children)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def ancestors() -> set[int]:
    """This process and its parents: their command lines may mention anything."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2:].split()[1])
    return pids


def default_sigint() -> None:
    """preexec_fn: a shell may start us with SIGINT ignored, and Python would then ignore
    Ctrl-C in the child; give it the disposition it has in an interactive terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
