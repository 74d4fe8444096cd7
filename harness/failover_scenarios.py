"""The failover scenario: kill or hang the replica most sessions are pinned to, keep the
sessions going, bring the replica back, and see what the users got.

Each session runs in three phases with its cookies and cart carried across (the scripted
driver's SessionCarry): `before` pins it, then the fault hits the replica most sessions are
pinned to, `during` keeps sending (one request every `interval_s`), then the replica is
restarted (kill: empty memory), resumed (pause: memory intact) or reconnected (disconnect:
memory intact), and after `settle_s`
`back` shows whether the sessions return to it. Only the Cluster protocol is used, so the
scenario runs on any runtime. Metrics: harness/analysis/failover.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.analysis import failover as fm
from harness.analysis import metrics as m
from harness.app import HEALTH_CHECKS_PATH
from harness.errors import ClusterError
from harness.history import FaultRecord, RequestRecord
from harness.outcome import SUMMARY_METRICS, DrivenScenario, Outcome
from harness.runtime import wait
from harness.runtime.cluster import Cluster
from harness.runtime.store import NAME as STORE
from harness.topology import Topology
from harness.traffic import plans
from harness.traffic.identity import client_address
from harness.traffic.scripted import Driver, SessionCarry

# fault -> its default recovery. kill: the process dies, its address refuses connects;
# pause: the process hangs; disconnect: the host is gone, its address goes silent
# (containers runtime only).
FAULTS = {"kill": "restart", "pause": "resume", "disconnect": "reconnect"}
RECOVERIES = ("", "restart", "resume", "reconnect")
FIRSTS = ("any", "GET", "POST")
# pinned: the replica most sessions are pinned to; store: the shared session store
# (app.session_store: redis), on which every session depends.
TARGETS = ("pinned", STORE)
# Modes in which the balancer itself sets an affinity cookie naming the replica.
COOKIE_MODES = ("cookie-insert", "cookie-prefix", "cookie-rewrite", "cookie", "cookie-route")


def phase_steps(rng: random.Random, count: int, interval_s: float,
                first: str = "any") -> tuple[plans.Step, ...]:
    """`count` shopper requests `interval_s` apart; `first` fixes the first one's method."""
    if first not in FIRSTS:
        raise ValueError(f"first must be one of {', '.join(FIRSTS)}, got {first!r}")
    start = first if first != "any" else rng.choice(("GET", "POST"))
    steps: list[plans.Step] = []
    for step in plans.shopper_steps(rng, count, start):
        if steps and interval_s > 0:
            steps.append(plans.Step(plans.PAUSE, f"{interval_s:g}"))
        steps.append(step)
    return tuple(steps)


def await_health_check(cluster: Cluster, target: str, timeout: float = 10.0) -> None:
    """Return just after the balancer's next active health check reached `target`. A fault
    then lands at the start of a check interval, not at a point in it that depends on when
    the cluster started (which varies with the machine's load): what clients see until the
    next check is then the same in every run."""
    ep = cluster.replica_endpoint(target)

    def seen() -> int:
        answer = wait.http_json(ep.host, ep.port, HEALTH_CHECKS_PATH)
        return int(answer["health_checks"]) if answer else -1

    before = seen()
    try:
        wait.until(lambda: seen() > before >= 0, timeout,
                   f"the balancer's next health check of {target}", interval=0.005)
    except TimeoutError as exc:
        raise ClusterError(f"fault_after_check: {exc} (does the topology enable active "
                           f"health checks?)") from None


def phase_plans(rng: random.Random, p: dict[str, Any]) -> dict[str, list[plans.SessionPlan]]:
    """The sessions' plans for each phase (pure, seeded): same users, addresses and
    connection style in all three; the before phase starts by adding to the cart."""
    users = [(f"f{i}", client_address(i, host=rng.randint(1, 254)))
             for i in range(p["sessions"])]

    def make(count: int, first: str) -> list[plans.SessionPlan]:
        return [plans.SessionPlan(user=u, session=u, client_ip=ip,
                                  steps=phase_steps(rng, count, p["interval_s"], first),
                                  connection=p["connection"]) for u, ip in users]

    return {fm.BEFORE: make(p["before"], "POST"), fm.DURING: make(p["during"], p["first_during"]),
            fm.BACK: make(p["back"], "any")}


def affinity_cookie(topology: Topology) -> str:
    return topology.options.get("cookie", "") if topology.mode in COOKIE_MODES else ""


@dataclass(frozen=True)
class FailoverScenario(DrivenScenario):

    def run(self, cluster: Cluster, topology: Topology, rng: random.Random,
            params: dict[str, Any], sink: Callable[[Any], None] | None = None,
            check: str = "") -> Outcome:
        p = {**self.params, **params}
        if p["fault"] not in FAULTS or p["recover"] not in RECOVERIES:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)} and recover one of "
                             f"{', '.join(RECOVERIES)}; got {p['fault']!r}, {p['recover']!r}")
        if p["target"] not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {p['target']!r}")
        if p["fault_after_check"] and p["target"] == STORE:
            raise ValueError("fault_after_check: the balancer does not health-check the store")
        recover = p["recover"] or FAULTS[p["fault"]]
        phases = phase_plans(rng, p)
        t0 = time.monotonic()
        carry: dict[str, SessionCarry] = {}
        records: list[RequestRecord] = []

        def now() -> float:
            return time.monotonic() - t0

        def drive(suffix: str) -> list[RequestRecord]:
            driver = Driver(cluster.url, scenario=self.name + suffix, check=check, sink=sink,
                            t0=t0, timeout=p["client_timeout_s"],
                            concurrency=len(phases[suffix]), transport=topology.client_ip,
                            tls_ca=topology.tls_ca)
            out = driver.run(phases[suffix], carry)
            records.extend(out)
            return out

        def event(op: str, began: float) -> float:
            record = FaultRecord(t=now(), op=op, target=target, began=began)
            if sink:
                sink(record)
            return record.t

        pins = fm.pinned(drive(fm.BEFORE))
        shared = p["target"] == STORE
        target = STORE if shared else fm.choose_target(pins)
        if p["fault_after_check"]:
            await_health_check(cluster, target)
        began = now()
        getattr(cluster, p["fault"])(target)
        pending = True  # the cluster must be put back, whatever happens next
        try:
            fault_t = event(p["fault"], began)
            drive(fm.DURING)
            began = now()
            getattr(cluster, recover)(target)
            pending = False
            recover_t = event(recover, began)
            time.sleep(p["settle_s"])  # the balancer's own timer (rise, fail_timeout) runs
            drive(fm.BACK)
        finally:
            if pending:
                getattr(cluster, recover)(target)
        window = fm.FaultWindow(target, fault_t, recover_t, shared=shared)
        values = m.summarize(records, self.key)
        values.update(fm.failover_metrics(records, window, affinity_cookie(topology)))
        evidence = [f"{p['fault']} {target} at {fault_t:.2f} s, {recover} at {recover_t:.2f} s; "
                    f"answers per phase (before | during | back; '!' = state lost):",
                    *fm.session_paths(records, window)]
        return Outcome(records, values, self.key, evidence)


_BASE = {"sessions": 9, "before": 3, "during": 8, "back": 5, "interval_s": 0.25,
         "fault": "kill", "recover": "", "settle_s": 1.0, "first_during": "any",
         "connection": "new", "client_timeout_s": 10.0, "target": "pinned",
         "fault_after_check": False}

FAILOVER_SCENARIOS = (
    FailoverScenario(
        "failover",
        "9 sessions pinned, then the replica most of them are on is killed (or paused, "
        "`fault: pause`, or cut off the network, `fault: disconnect`) while they keep "
        "sending; then restarted (resumed, reconnected) and, after "
        "`settle_s`, the sessions send again; `target: store` hits the shared session store "
        "instead, which every session depends on",
        dict(_BASE), SUMMARY_METRICS + fm.FAILOVER_METRICS),
)
