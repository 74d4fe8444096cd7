"""The run's check log and report.json (written atomically: no half-written report)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__

REPORT_SCHEMA_VERSION = 1


@dataclass
class CheckLog:
    seed: int
    runtime: str
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    started: float = field(default_factory=time.time)
    checks: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    topologies: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule: dict[str, Any] | None = None  # a concurrent run's workers and groups

    def record(self, check: dict[str, Any]) -> None:
        self.checks.append(check)

    def summary(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "unknown": 0}
        for c in self.checks:
            out[c["verdict"]] = out.get(c["verdict"], 0) + 1
        out["total"] = len(self.checks)
        return out

    def to_report(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "stickler_version": __version__,
            "started": _iso(self.started),
            "finished": _iso(time.time()),
            "seed": self.seed,
            "command": self.command,
            "runtime": self.runtime,
            "versions": self.versions,
            "topologies": self.topologies,
            "summary": self.summary(),
            "checks": self.checks,
            **({"schedule": self.schedule} if self.schedule is not None else {}),
        }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """All of `text` at `path`, or (on any error) the file as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
