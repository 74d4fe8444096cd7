"""Findings backed by a measurement: what a failed requirement means for the users, in the
numbers the check measured, beside what in the config explains it. Pure: report entries in,
sentences out."""

from __future__ import annotations

from typing import Any


def _dead_server(m: dict[str, Any], failover: dict[str, str]) -> str:
    codes = ", ".join(f"{m[k]:g} x {k[-3:]}" for k in ("status_502", "status_503", "status_504")
                      if m.get(k))
    errors = m.get("transport_errors", 0)
    how = ", ".join(filter(None, [codes, f"{errors:g} without an answer" if errors else ""]))
    return (f"a dead server's users got errors until it came back: "
            f"{m.get('failed_requests', 0):g} of {m.get('during_requests', 0):g} requests of "
            f"its {m.get('affected_sessions', 0):g} sessions failed ({how or 'errors'}); "
            f"the config's failover: " + "; ".join(f"{k} {v}" for k, v in failover.items()))


def _sessions_kept(m: dict[str, Any], failover: dict[str, str]) -> str:
    return (f"{m.get('groups_with_state_loss', 0):g} of {m.get('groups', 0):g} shoppers lost "
            f"their session ({m.get('state_losses', 0):g} requests saw another cart than the "
            f"one they built)")


def _sessions_spread(m: dict[str, Any], failover: dict[str, str]) -> str:
    return (f"one server took {m.get('max_load_share', 0):.0%} of the sessions' requests "
            f"({m.get('replicas_used', 0):g} of the servers served any)")


def _scale_up(m: dict[str, Any], failover: dict[str, str]) -> str:
    return (f"adding a server moved {m.get('moved_between_old', 0):g} of "
            f"{m.get('remap_keys', 0):g} sessions from one old server to another (and "
            f"{m.get('moved_to_new', 0):g} to the new one)")


EXPLAIN = {
    "requirement.dead-server-users-served": _dead_server,
    "requirement.sessions-kept": _sessions_kept,
    "requirement.sessions-spread": _sessions_spread,
    "requirement.scale-up-moves-only-to-new": _scale_up,
}


def measured(checks: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """One finding per failed requirement: the check, the sentence, and the config's own
    findings (static, from the file) that may explain it."""
    out = []
    static = [f["message"] for f in config.get("findings", []) if f["severity"] == "warning"]
    for check in checks:
        explain = EXPLAIN.get(check.get("id", ""))
        if explain is None or check.get("verdict") != "fail":
            continue
        out.append({"check": check["id"], "topology": check.get("topology", ""),
                    "finding": explain(check.get("metrics", {}), config.get("failover", {})),
                    "config_says": static})
    return out
