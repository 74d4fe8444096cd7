"""NGINX: ip_hash, hash $cookie_/$http_ consistent, and round robin."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from harness.balancers.base import Adapter, Choice, Layout, ModeSpec

# Options every NGINX mode accepts: when a request is passed to the next server, and the
# proxy timeouts (0 keeps NGINX's default of 60 s).
NEXT_UPSTREAM_CASES = ("error", "timeout", "invalid_header", "http_500", "http_502", "http_503",
                       "http_504", "http_403", "http_404", "http_429", "non_idempotent", "off")
COMMON = {
    "next_upstream": Choice(("error", "timeout"), NEXT_UPSTREAM_CASES, multiple=True,
                            alone=("off",)),
    "next_upstream_tries": 0,
    "next_upstream_timeout_ms": 0,
    "connect_timeout_ms": 0,
    "read_timeout_ms": 0,
}


def _mode(summary: str, options: dict | None = None, **kw: Any) -> ModeSpec:
    return ModeSpec(summary, {**(options or {}), **COMMON}, **kw)


class Nginx(Adapter):
    kind = "nginx"
    binary = "nginx"
    apt_package = "nginx-light"
    template = "nginx.conf.j2"
    config_name = "nginx.conf"
    reload_signal = signal.SIGHUP
    # Open-source NGINX has `down` (the server takes nothing, persistent clients included)
    # and `weight`, never 0; the `drain` server parameter is NGINX Plus only.
    no_drain = ("open-source NGINX has no drain state: `drain` is an NGINX Plus server "
                "parameter, and `down` sends the replica's pinned clients elsewhere too")
    modes = {
        "roundrobin": _mode("default weighted round robin (the baseline)"),
        "ip-hash": _mode("ip_hash: key is the first three octets of an IPv4 address",
                         keyed_by_address=True),
        "cookie-hash": _mode("hash $cookie_<name> [consistent]",
                             {"cookie": "sid", "consistent": True}),
        "header-hash": _mode("hash $http_<name> [consistent]",
                             {"header": "X-Session-Id", "consistent": True}),
    }
    # NGINX open source has passive checks only: max_fails failures within fail_timeout.
    health_check_keys = {"enabled": True, "max_fails": 1, "fail_timeout_s": 10}

    def version_pattern(self) -> str:
        return r"nginx/(\S+)"

    def template_vars(self, topology: Any, layout: Layout) -> dict[str, Any]:
        # As root, workers would switch to 'nobody' and could not use the run's 0700 temp dir.
        return {"run_as_root": os.geteuid() == 0, "var": self.var_name}

    def command(self, config: Path, layout: Layout) -> list[str]:
        return [self.which(), "-p", str(layout.workdir), "-c", str(config), "-e", "stderr"]

    def check_command(self, config: Path, layout: Layout) -> list[str]:
        return [self.which(), "-t", "-q", "-p", str(layout.workdir), "-c", str(config),
                "-e", "stderr"]

    @staticmethod
    def var_name(header_or_cookie: str) -> str:
        return header_or_cookie.lower().replace("-", "_")
