"""Apache httpd 2.4: mod_proxy_balancer with a route cookie (stickysession), and the
byrequests and bybusyness schedulers without stickiness."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from harness.balancers.base import Adapter, Choice, Layout, ModeSpec

MODULES = Path("/usr/lib/apache2/modules")
LBMETHODS = ("byrequests", "bybusyness", "bytraffic")
# Options every mode accepts, BalancerMember parameters (mod_proxy's worker parameters):
# how long a member in error state is skipped (Apache's default 60 s; 0 retries it at
# once), and the socket and connect timeouts (0 keeps Apache's defaults: Timeout, 60 s).
COMMON = {"retry_s": 60, "timeout_s": 0, "connect_timeout_ms": 0}


def _mode(summary: str, options: dict | None = None) -> ModeSpec:
    return ModeSpec(summary, {**(options or {}), **COMMON})


class Apache(Adapter):
    kind = "apache"
    binary = "apache2"
    apt_package = "apache2"
    template = "apache.conf.j2"
    config_name = "apache.conf"
    # SIGUSR1 is Apache's graceful restart: the parent re-reads the config and starts new
    # children, the old ones finish their requests (httpd docs, "Stopping and Restarting").
    reload_signal = signal.SIGUSR1
    forks_workers = True
    # Drain is a member status: "N: Worker is in drain mode and will only accept existing
    # sticky sessions destined for itself" (mod_proxy, BalancerMember status).
    no_drain = ""
    modes = {
        "cookie-route": _mode(
            "stickysession=<cookie>, route=<replica id> per member; mod_headers sets "
            "<cookie>=.<route> when the route changed (the mod_proxy_balancer docs' example)",
            {"cookie": "ROUTEID", "nofailover": False,
             "lbmethod": Choice("byrequests", LBMETHODS)}),
        "byrequests": _mode("lbmethod=byrequests (weighted request counting), no stickiness"),
        "bybusyness": _mode("lbmethod=bybusyness (fewest pending requests), no stickiness"),
    }
    # mod_proxy_hcheck: a GET of `uri` every interval_s; `fails` failed checks put a
    # member in error state, `passes` good ones take it out again.
    health_check_keys = {"enabled": False, "uri": "/healthz", "interval_s": 1, "fails": 1,
                         "passes": 1}

    def version_pattern(self) -> str:
        return r"Apache/(\S+)"

    def option_errors(self, mode: str, options: dict[str, Any],
                      health_check: dict[str, Any]) -> dict[str, str]:
        errors = {}
        if options["timeout_s"] > 3600:
            errors["options.timeout_s"] = (f"expected 0 (Apache's default) to 3600 seconds, "
                                           f"got {options['timeout_s']}")
        for key in ("interval_s", "fails", "passes"):
            if health_check[key] < 1:
                errors[f"health_check.{key}"] = f"expected 1 or more, got {health_check[key]}"
        uri = health_check["uri"]
        if not uri.startswith("/") or " " in uri:
            errors["health_check.uri"] = f"expected a path starting with /, got {uri!r}"
        return errors

    def template_vars(self, topology: Any, layout: Layout) -> dict[str, Any]:
        # Apache refuses to serve as root: as root its children run as nobody (the parent
        # opens logs and listeners before it switches, so the 0700 run dir is fine).
        lbmethod = topology.options.get("lbmethod", topology.mode
                                        if topology.mode in LBMETHODS else "byrequests")
        return {"run_as_root": os.geteuid() == 0, "modules": MODULES, "lbmethod": lbmethod,
                "onoff": lambda flag: "On" if flag else "Off"}

    def command(self, config: Path, layout: Layout) -> list[str]:
        return [self.which(), "-DFOREGROUND", "-f", str(config)]

    def check_command(self, config: Path, layout: Layout) -> list[str]:
        return [self.which(), "-t", "-f", str(config)]
