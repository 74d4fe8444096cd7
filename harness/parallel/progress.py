"""Progress of a concurrent run: a live display on a terminal (rich), one plain line per
finished check elsewhere (CI logs). Both are fed the same events by the pytest plugin."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

VERDICT_WORDS = {"pass": "PASS", "fail": "FAIL", "unknown": "UNKNOWN", "error": "ERROR"}


class Progress:
    """Counts and timings; `line(...)` is the plain form of one finished check."""

    def __init__(self, total: int, estimate_s: float, workers: int,
                 clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.estimate_s = estimate_s  # the serial estimate of the whole run
        self.workers = workers
        self.clock = clock
        self.began = clock()
        self.counts = {"pass": 0, "fail": 0, "unknown": 0, "error": 0}
        self.running: dict[str, float] = {}  # key -> when it started
        self.done_estimate_s = 0.0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def start(self, key: str) -> None:
        self.running[key] = self.clock()

    def finish(self, key: str, verdict: str, estimate_s: float) -> None:
        self.running.pop(key, None)
        self.counts[verdict] = self.counts.get(verdict, 0) + 1
        self.done_estimate_s += estimate_s

    def eta_s(self) -> float | None:
        """Remaining seconds, from the pace so far against the estimates."""
        elapsed = self.clock() - self.began
        if self.done >= self.total:
            return 0.0
        if self.done_estimate_s <= 0 or elapsed < 1:
            return None
        rate = self.done_estimate_s / elapsed
        return max(0.0, (self.estimate_s - self.done_estimate_s) / rate)

    def line(self, key: str, verdict: str, wall_s: float) -> str:
        width = len(str(self.total))
        return (f"[{self.done:>{width}}/{self.total}] {self.clock() - self.began:5.0f}s  "
                f"{VERDICT_WORDS.get(verdict, verdict):<7} {wall_s:5.1f}s  {key}")

    def status(self) -> str:
        eta = self.eta_s()
        c = self.counts
        return (f"{self.done}/{self.total} checks  pass {c['pass']}  fail {c['fail']}  "
                f"unknown {c['unknown']}  error {c['error']}  running {len(self.running)}  "
                f"elapsed {self.clock() - self.began:.0f}s"
                + (f"  eta {eta:.0f}s" if eta is not None else ""))


class LiveDisplay:
    """A rich Live panel: the status line, a bar and the checks running now. Refreshed only
    when asked (no thread), so nothing is drawn while pytest captures output."""

    def __init__(self, progress: Progress, file: Any):
        from rich.console import Console
        from rich.live import Live

        self.progress = progress
        self.console = Console(file=file)
        self.live = Live(console=self.console, auto_refresh=False, transient=True)
        self.live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        p = self.progress
        now = p.clock()
        running = sorted(p.running.items(), key=lambda kv: kv[1])
        rows = [Text(f"  {now - t:5.0f}s  {key}", style="dim") for key, t in running[:12]]
        # In a grid, so that the rows after the bar start on lines of their own.
        bar = Table.grid()
        bar.add_row(ProgressBar(total=max(1, p.total), completed=p.done, width=60))
        return Group(Text(p.status(), style="bold"), bar, *rows)

    def refresh(self) -> None:
        self.live.update(self._render(), refresh=True)

    def print(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, highlight=False, markup=False)
        self.refresh()

    def close(self) -> None:
        self.live.stop()
