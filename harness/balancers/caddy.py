"""Caddy 2.6: reverse_proxy with lb_policy cookie, ip_hash, header, round_robin, random
(Caddy's default) and first."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from harness.balancers.base import Adapter, Layout, ModeSpec

# Options every mode accepts: how long to keep trying other upstreams when the chosen one
# cannot be reached (0 = Caddy's default: no retries), and the pause between tries.
COMMON = {"lb_try_duration_ms": 0, "lb_try_interval_ms": 250}
TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # RFC 9110 token: cookie/header names
SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]*$")  # one bare Caddyfile word, no quoting needed


def _mode(summary: str, options: dict | None = None, **kw: Any) -> ModeSpec:
    return ModeSpec(summary, {**(options or {}), **COMMON}, **kw)


class Caddy(Adapter):
    kind = "caddy"
    binary = "caddy"
    apt_package = "caddy"
    template = "caddy.Caddyfile.j2"
    config_name = "Caddyfile"
    # Caddy 2.6 ignores SIGHUP and SIGUSR1 ("not implemented", sigtrap_posix.go): a new
    # config is POSTed to its admin endpoint (`caddy reload`), here a unix socket in the run's
    # own directory (never the default localhost:2019). One process: no workers to wait for.
    forks_workers = False
    no_drain = ("Caddy 2.6's reverse_proxy has no drain state or weights: an upstream is in "
                "the pool (new and pinned clients) or out of it (pinned clients move too)")
    # No PROXY-protocol listener without plugins, and `trusted_proxies` only decides which
    # incoming X-Forwarded-* values are passed on: ip_hash always hashes the connection's
    # address (req.RemoteAddr, selectionpolicies.go), so the source address is the only way.
    client_ip_transports = ("source",)
    modes = {
        "roundrobin": _mode("lb_policy round_robin, no persistence (the baseline)"),
        "random": _mode("lb_policy random, Caddy's default policy, no persistence"),
        "first": _mode("lb_policy first: the first available upstream in config order"),
        "cookie": _mode("lb_policy cookie <name> [<secret>]: HMAC-SHA256 of the upstream's "
                        "dial address in a cookie Caddy sets", {"cookie": "lb", "secret": ""}),
        "ip-hash": _mode("lb_policy ip_hash: rendezvous hash of the whole client address",
                         keyed_by_address=True),
        "header-hash": _mode("lb_policy header <field>: rendezvous hash of a request header",
                             {"header": "X-Session-Id"}),
    }
    # Active checks (health_uri, health_interval) when enabled; passive checks when
    # fail_duration_s > 0 (max_fails failures within it mark an upstream down).
    health_check_keys = {"enabled": False, "uri": "/healthz", "interval_ms": 1000,
                         "timeout_ms": 1000, "fail_duration_s": 0, "max_fails": 1}
    POLICIES = {"roundrobin": "round_robin", "random": "random", "first": "first",
                "cookie": "cookie", "ip-hash": "ip_hash", "header-hash": "header"}

    def version(self, env: dict[str, str] | None = None) -> str:
        # Even `caddy version` creates $HOME/.step (its PKI library's init): give it a
        # throwaway home.
        with tempfile.TemporaryDirectory(prefix="stickler-caddy-version-") as home:
            return super().version({**(env or os.environ), "HOME": home})

    def version_args(self) -> list[str]:
        return ["version"]

    def version_pattern(self) -> str:
        return r"v?(\d+\.\d+\.\d+\S*)"

    def option_errors(self, mode: str, options: dict[str, Any],
                      health_check: dict[str, Any]) -> dict[str, str]:
        errors = {}
        for key in ("cookie", "header"):
            if key in options and not TOKEN.match(options[key]):
                errors[f"options.{key}"] = (f"expected a {key} name (letters, digits and "
                                            f"!#$%&'*+.^_`|~-), got {options[key]!r}")
        if "secret" in options and not SECRET.match(options["secret"]):
            errors["options.secret"] = ("expected a secret of letters, digits and ._~+/=- "
                                        f"(one Caddyfile word), got {options['secret']!r}")
        for key in ("lb_try_duration_ms", "lb_try_interval_ms"):
            if options[key] < 0:
                errors[f"options.{key}"] = f"expected 0 or more milliseconds, got {options[key]}"
        for key, zero_ok in (("interval_ms", False), ("timeout_ms", False),
                             ("fail_duration_s", True)):
            value = health_check[key]
            if value < 0 or (value == 0 and not zero_ok):
                expected = "0 (off) or more" if zero_ok else "more than 0"
                errors[f"health_check.{key}"] = f"expected {expected}, got {value}"
        if health_check["max_fails"] < 1:
            errors["health_check.max_fails"] = (f"expected 1 or more (Caddy: must be >= 1), "
                                                f"got {health_check['max_fails']}")
        uri = health_check["uri"]
        if not uri.startswith("/") or " " in uri:
            errors["health_check.uri"] = f"expected a path starting with /, got {uri!r}"
        return errors

    def template_vars(self, topology: Any, layout: Layout) -> dict[str, Any]:
        return {"policy": self.POLICIES[topology.mode], "admin": self.admin_socket(layout)}

    def environment(self, layout: Layout) -> dict[str, str]:
        # Caddy keeps an autosave of its config and a PKI dir under $HOME / XDG dirs: keep
        # them in the run's directory, not in the user's home.
        return {"HOME": str(layout.workdir), "XDG_CONFIG_HOME": str(layout.workdir / "caddy"),
                "XDG_DATA_HOME": str(layout.workdir / "caddy")}

    @staticmethod
    def admin_socket(layout: Layout) -> str:
        return f"unix/{layout.workdir / 'caddy-admin.sock'}"

    def config_name_for(self, topology: Any) -> str:
        # A user's Caddyfile runs as the JSON `caddy adapt` made of it (harness/configs).
        return "caddy.json" if topology.config is not None else self.config_name

    @staticmethod
    def _adapter_args(config: Path) -> list[str]:
        return [] if config.suffix == ".json" else ["--adapter", "caddyfile"]

    def command(self, config: Path, layout: Layout) -> list[str]:
        return [self.which(), "run", "--config", str(config), *self._adapter_args(config)]

    def check_command(self, config: Path, layout: Layout) -> list[str]:
        return [self.which(), "validate", "--config", str(config),
                *self._adapter_args(config)]

    def reload_command(self, config: Path, layout: Layout) -> list[str] | None:
        # --force: load even if Caddy thinks nothing changed (the generation header always
        # does, but a reload must never be skipped silently).
        return [self.which(), "reload", "--config", str(config), *self._adapter_args(config),
                "--address", self.admin_socket(layout), "--force"]
