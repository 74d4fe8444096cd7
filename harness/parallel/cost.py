"""What a check costs the machine: whether it faults its cluster, how long it takes and how
much of the machine it keeps busy (its weight). Estimates, from measured serial runs; the
scheduler only orders and packs by them, so a wrong one costs speed, never a verdict."""

from __future__ import annotations

from typing import Any

from harness.failover_scenarios import FailoverScenario
from harness.load_scenarios import LoadScenario
from harness.parallel.plan import Job
from harness.replay_scenarios import ReplayScenario
from harness.scenarios import SCENARIOS, Scenario

# Weights: the share of a 2-core machine a check keeps busy, measured (CPU seconds over wall
# seconds of each kind in a serial run). Scheduling keeps their sum under the capacity, so
# the machine is never saturated and a check that times something (re-pin times, expiry)
# sees the delays of a serial run. A trace replay sends as fast as its schedule allows and
# keeps a core busy; a failover check mostly waits on the balancer's timers.
LOAD_WEIGHT = 0.17
REPLAY_WEIGHT = 0.45
FAILOVER_WEIGHT = 0.06
PAUSE_WEIGHT = 0.06
SCRIPTED_WEIGHT = 0.2
START_S = {"processes": 0.6, "containers": 4.0}
RUNTIME_FACTOR = {"processes": 1.0, "containers": 1.5}


def job_for(key: str, scenario_name: str, params: dict[str, Any], cluster: str, runtime: str,
            order: int) -> Job:
    scenario = SCENARIOS[scenario_name]
    p = {**scenario.params, **params}
    factor = RUNTIME_FACTOR.get(runtime, 1.5)
    faults, estimate, weight = _cost(scenario, p)
    return Job(key, cluster, faults, estimate * factor, min(1.0, weight * factor), order,
               START_S.get(runtime, 4.0))


def _cost(scenario: Any, p: dict[str, Any]) -> tuple[bool, float, float]:
    if isinstance(scenario, LoadScenario):
        faults = bool(p.get("fault"))
        return faults, float(p["duration"]) + 1.5, LOAD_WEIGHT
    if isinstance(scenario, FailoverScenario):
        return True, 8.0, FAILOVER_WEIGHT
    if isinstance(scenario, ReplayScenario):
        return False, 4.0, REPLAY_WEIGHT
    if isinstance(scenario, Scenario):
        faults = bool(p.get("down")) or scenario.drive.__name__ != "_drive_once"
        requests = p.get("sessions", 24) * p.get("requests", 12)
        pause = float(p.get("pause_s") or 0)
        weight = PAUSE_WEIGHT if pause else SCRIPTED_WEIGHT
        return faults, 0.3 + requests / 400 + pause, weight
    return True, 5.0, REPLAY_WEIGHT  # an unknown kind of scenario: alone on its cluster
