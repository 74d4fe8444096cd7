"""The compact verdict table printed at the end of a conformance run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

STYLE = {"pass": "green", "fail": "bold red", "unknown": "yellow"}


def print_table(report: dict[str, Any], console: Console | None = None) -> None:
    """One row per check; the reasons of failed or undecided checks follow the table."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # CI logs: wide enough for one row per check
            console = Console(width=160)
    table = Table(title=f"Stickler conformance: seed {report['seed']}, "
                        f"runtime {report['runtime']}", box=None, pad_edge=False)
    table.add_column("verdict", no_wrap=True)
    table.add_column("topology", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("samples", justify="right", no_wrap=True)
    for check in report["checks"]:
        verdict = check["verdict"]
        table.add_row(f"[{STYLE[verdict]}]{verdict.upper()}[/]", check["topology"],
                      check["id"].split(".", 1)[-1], str(check["samples"]))
    console.print(table)
    for check in report["checks"]:
        if check["verdict"] != "pass":
            console.print(f"[{STYLE[check['verdict']]}]{check['verdict'].upper()}[/] "
                          f"{check['topology']} {check['id']}: {check['reason']}")
    s = report["summary"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(report["versions"].items()))
    console.print(f"{s['pass']} passed, {s['fail']} failed, {s['unknown']} unknown "
                  f"of {s['total']} checks; {versions}")


def slowest(report: dict[str, Any], count: int = 10) -> list[dict[str, Any]]:
    timed = [c for c in report["checks"] if "wall_s" in c]
    return sorted(timed, key=lambda c: -c["wall_s"])[:count]


def print_slowest(report: dict[str, Any], count: int = 10,
                  console: Console | None = None) -> None:
    """The checks that took longest (wall time, cluster start-up included)."""
    rows = slowest(report, count)
    if not rows:
        return
    console = console or Console()
    total = sum(c["wall_s"] for c in report["checks"] if "wall_s" in c)
    console.print(f"slowest {len(rows)} checks (of {total:.0f} s of checks in all):",
                  highlight=False)
    for c in rows:
        console.print(f"  {c['wall_s']:6.1f} s  {c['topology']} {c['id']}", highlight=False)
