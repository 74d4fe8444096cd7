"""Stickler's own reference proxy (harness/proxy/) as a balancer like the others."""

from __future__ import annotations

import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from harness import __version__
from harness.balancers.base import Adapter, Layout, ModeSpec

# Every mode: concurrency limits, and an optional session-based replay cache rule keyed on
# a cookie (off while session_cache_cookie is empty).
LIMITS = {"soft_limit": 20, "hard_limit": 25, "force_timeout_ms": 5000,
          "session_cache_cookie": "", "session_cache_ttl": 30, "session_cache_bypass": False}


class Reference(Adapter):
    kind = "reference"
    binary = "python"
    apt_package = ""
    template = "reference.yaml.j2"
    config_name = "reference.yaml"
    reload_signal = signal.SIGHUP
    forks_workers = False  # one process: a reload changes it in place
    modes = {
        "least-loaded": ModeSpec("Fly's default: least loaded under soft/hard limits",
                                 dict(LIMITS)),
        "cookie": ModeSpec("a signed affinity cookie the proxy inserts (and hides from the app)",
                           {"cookie": "stickler-affinity", **LIMITS}),
        "hash-client-ip": ModeSpec("consistent hashing on the client address", dict(LIMITS)),
        "hash-header": ModeSpec("consistent hashing on a request header",
                                {"header": "X-Session-Id", **LIMITS}),
        "hash-cookie": ModeSpec("consistent hashing on a cookie", {"cookie": "sid", **LIMITS}),
    }
    health_check_keys = {"enabled": True, "interval_ms": 500, "fall": 2, "rise": 1}

    def which(self) -> str:
        return sys.executable

    def version(self) -> str:
        return __version__

    def template_vars(self, topology: Any, layout: Layout) -> dict[str, Any]:
        regions = {r.id: r.region for r in topology.replicas}
        # A fresh secret per render would re-pin every client on reload: one per run.
        layout.secret = layout.secret or secrets.token_hex(16)
        secret = layout.secret
        return {"secret": secret, "region_of": regions.get}

    def command(self, config: Path, layout: Layout) -> list[str]:
        return [sys.executable, "-m", "harness.proxy", "--config", str(config)]

    def check_command(self, config: Path, layout: Layout) -> list[str]:
        return [sys.executable, "-c", "import sys; from harness.proxy.config import load_config;"
                " load_config(sys.argv[1])", str(config)]
