"""HAProxy: cookie insert/prefix/rewrite, balance source (map-based, consistent), hdr, rr."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from harness.balancers.base import Adapter, Choice, Layout, ModeSpec

# Options every HAProxy mode accepts: the failover behaviour of the backend. Timeouts of 0
# keep the defaults section's (connect 2s, server 30s).
COMMON = {"redispatch": False, "retries": 3, "persist": False, "connect_timeout_ms": 0,
          "server_timeout_ms": 0,
          "on_marked_down": Choice("", ("", "shutdown-sessions"))}


def _mode(summary: str, options: dict | None = None, **app: Any) -> ModeSpec:
    return ModeSpec(summary, {**(options or {}), **COMMON}, **app)


class HAProxy(Adapter):
    kind = "haproxy"
    binary = "haproxy"
    apt_package = "haproxy"
    template = "haproxy.cfg.j2"
    config_name = "haproxy.cfg"
    # Master-worker mode (-W): SIGUSR2 makes the master re-read the config and start new
    # workers while the old ones finish their connections.
    reload_signal = signal.SIGUSR2
    modes = {
        "roundrobin": _mode("balance roundrobin, no persistence (the baseline)"),
        "cookie-insert": _mode(
            "cookie <name> insert [indirect] [nocache] [maxidle <s>] [maxlife <s>]",
            {"cookie": "SRVID", "indirect": True, "nocache": True, "maxidle_s": 0,
             "maxlife_s": 0},
        ),
        "cookie-prefix": _mode(
            "cookie <app cookie> prefix: the server id is prefixed to the app's own cookie",
            {"cookie": "JSESSIONID"},
            app_session_cookie_from="cookie",
        ),
        "cookie-rewrite": _mode(
            "cookie <name> rewrite: the app sets the cookie, HAProxy rewrites its value",
            {"cookie": "SERVERID"},
            app_affinity_cookie_from="cookie",
        ),
        "source": _mode("balance source with hash-type map-based", {},
                        keyed_by_address=True),
        "source-consistent": _mode("balance source with hash-type consistent", {},
                                   keyed_by_address=True),
        "header": _mode("balance hdr(<name>) with hash-type consistent",
                           {"header": "X-Session-Id"}),
    }
    health_check_keys = {"enabled": False, "interval_ms": 1000, "fall": 3, "rise": 2}

    def command(self, config: Path, layout: Layout) -> list[str]:
        return [self.which(), "-W", "-db", "-f", str(config)]

    def option_errors(self, mode: str, options: dict[str, Any],
                      health_check: dict[str, Any]) -> dict[str, str]:
        return {f"options.{key}": f"expected 0 (off) or more seconds, got {options[key]}"
                for key in ("maxidle_s", "maxlife_s") if options.get(key, 0) < 0}

    def check_command(self, config: Path, layout: Layout) -> list[str]:
        return [self.which(), "-c", "-f", str(config)]  # no -q: its errors are the message
