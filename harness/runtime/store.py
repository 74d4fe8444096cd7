"""The shared session store a topology may ask for (`app.session_store: redis`): one
redis-server per cluster, started and stopped with it, on the cluster's own address.

Persistence is off: a restarted Redis is empty, as a cache-only session store would be,
and nothing is written outside the run's directory."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from harness.errors import MissingDependency

NAME = "store"  # the node's name in logs and fault targets
PORT = 6379  # inside containers


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise MissingDependency("redis-server is not installed (app.session_store: redis "
                                "needs it); install it with 'apt-get install redis-server'")
    return path


def redis_command(host: str, port: int, workdir: Path | str, binary: str | None = None
                  ) -> list[str]:
    return [binary or redis_binary(), "--bind", host, "--port", str(port),
            "--save", "", "--appendonly", "no", "--protected-mode", "no",
            "--dir", str(workdir), "--daemonize", "no", "--loglevel", "notice"]


def url(host: str, port: int) -> str:
    return f"redis://{host}:{port}/0"


def redis_version(binary: str | None = None) -> str:
    out = subprocess.run([binary or redis_binary(), "--version"], capture_output=True,
                         text=True, timeout=10).stdout
    match = re.search(r"v=(\S+)", out)
    return match.group(1) if match else "unknown"
