"""Expectations: each documented behaviour of a balancer, with its citation and the
conditions a scenario's metrics must meet. YAML under fixtures/expectations/<kind>.yaml.
"""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.balancers import ADAPTERS
from harness.errors import InputError
from harness.scenarios import SCENARIOS
from harness.topology import APP_KEYS
from harness.yamlsrc import Doc, load

EXPECTATIONS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "expectations"
# What a user wants of session affinity, whatever the mechanism: judged on the user's own
# configs (config topologies) beside the expectations of the mechanism found in them.
REQUIREMENTS = "requirements"
ANY = "any"
OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
       ">": operator.gt, "<": operator.lt}
# `<metric> <op> <number>`, or `<metric> <op> <metric>` (e.g. status_503 == failed_requests)
CONDITION = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+|[a-z][a-z_0-9]*)\s*$")
SOURCES = ("documented", "source-code", "observed", "differs-from-docs", "folklore-refuted",
           "folklore-confirmed")
BEHAVIOUR_KEYS = ("id", "title", "modes", "when", "runtimes", "suite", "scenario", "params",
                  "assert", "min_samples", "samples", "source", "citation", "evidence")
CITATION_KEYS = ("document", "url", "quote")


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    value: float | str  # a number, or the name of another metric

    def bound(self, metrics: dict[str, float]) -> float:
        return metrics[self.value] if isinstance(self.value, str) else self.value

    def holds(self, metrics: dict[str, float]) -> bool:
        return OPS[self.op](metrics[self.metric], self.bound(metrics))

    def measured(self, metrics: dict[str, float]) -> str:
        """What the run measured, for a failure message."""
        extra = f", {self.value} {metrics[self.value]:g}" if isinstance(self.value, str) else ""
        return f"measured {metrics[self.metric]:g}{extra}"

    def metrics(self) -> tuple[str, ...]:
        return (self.metric, self.value) if isinstance(self.value, str) else (self.metric,)

    def __str__(self) -> str:
        value = self.value if isinstance(self.value, str) else f"{self.value:g}"
        return f"{self.metric} {self.op} {value}"


def parse_condition(text: str) -> Condition:
    match = CONDITION.match(text)
    if not match:
        raise ValueError(f"expected '<metric> <op> <number>' (or '<metric> <op> <metric>') "
                         f"with op one of {', '.join(OPS)}, got {text!r}")
    value = match[3]
    return Condition(match[1], match[2], value if value[0].isalpha() else float(value))


@dataclass(frozen=True)
class Expectation:
    id: str
    balancer: str
    title: str
    modes: tuple[str, ...]
    suite: str
    scenario: str
    params: dict[str, Any]
    conditions: tuple[Condition, ...]
    min_samples: int
    source: str
    citation: dict[str, str]
    evidence: str = ""
    when: dict[str, Any] = field(default_factory=dict)  # topology options it applies to
    samples: str = "judged_requests"  # the metric that counts what the verdict rests on
    # The runtimes it is judged on (empty: all). A fault only one runtime can inject (the
    # host-gone `disconnect` needs a network) names that runtime.
    runtimes: tuple[str, ...] = ()
    file: str = ""
    line: int | None = None

    def applies_to(self, mode: str, options: dict[str, Any]) -> bool:
        def same(have: Any, want: Any) -> bool:  # a list in YAML, a tuple in a topology
            return have == (tuple(want) if isinstance(want, list) else want)

        # An expectation is about the in-memory app unless it names another session store:
        # a shared store changes what a switch of replica costs.
        store = "app.session_store"
        if self.balancer == ANY:  # a requirement: any mechanism, any store
            return all(same(options.get(k), v) for k, v in self.when.items())
        if options.get(store, "memory") != self.when.get(store, "memory"):
            return False
        return mode in self.modes and all(same(options.get(k), v) for k, v in self.when.items())

    def runs_on(self, runtime: str) -> bool:
        return not self.runtimes or runtime in self.runtimes


def _expectation(doc: Doc, i: int, item: Any, kind: str) -> Expectation:
    path = f"behaviours[{i}]"
    doc.mapping(item, path, BEHAVIOUR_KEYS)
    for key in ("id", "title", "modes", "scenario", "assert", "source", "citation"):
        if key not in item:
            raise doc.error(path, f"missing key {key!r}")
    modes = item["modes"]
    if not isinstance(modes, list) or not modes:
        raise doc.error(f"{path}.modes", "expected a non-empty list of modes")
    for j, mode in enumerate(modes):
        if kind == ANY:
            if modes != [ANY]:
                raise doc.error(f"{path}.modes", "expected [any]: a requirement holds for "
                                "every mechanism")
            break
        if mode not in ADAPTERS[kind].modes:
            raise doc.error(f"{path}.modes[{j}]", f"unknown {kind} mode {mode!r}; expected one "
                            f"of: {', '.join(sorted(ADAPTERS[kind].modes))}")
    scenario = SCENARIOS.get(item["scenario"])
    if scenario is None:
        raise doc.error(f"{path}.scenario", f"unknown scenario {item['scenario']!r}; expected "
                        f"one of: {', '.join(sorted(SCENARIOS))}")
    params = doc.mapping(item.get("params") or {}, f"{path}.params", scenario.params,
                         f"parameter of scenario {scenario.name}")
    raw_conditions = item["assert"]
    if not isinstance(raw_conditions, list) or not raw_conditions:
        raise doc.error(f"{path}.assert", "expected a non-empty list of conditions")
    conditions = []
    for j, text in enumerate(raw_conditions):
        try:
            cond = parse_condition(str(text))
        except ValueError as exc:
            raise doc.error(f"{path}.assert[{j}]", str(exc)) from None
        for metric in cond.metrics():
            if metric not in scenario.metrics:
                raise doc.error(f"{path}.assert[{j}]", f"scenario {scenario.name} has no "
                                f"metric {metric!r}; it has: {', '.join(scenario.metrics)}")
        conditions.append(cond)
    if item["source"] not in SOURCES:
        raise doc.error(f"{path}.source", f"expected one of: {', '.join(SOURCES)}")
    citation = doc.mapping(item["citation"], f"{path}.citation", CITATION_KEYS)
    if not all(isinstance(citation.get(k), str) and citation[k].strip()
               for k in ("document", "quote")):
        raise doc.error(f"{path}.citation", "expected a mapping with a document and a quote "
                        "(and a url where there is one)")
    when = item.get("when") or {}
    if not isinstance(when, dict):
        raise doc.error(f"{path}.when", "expected a mapping of topology options to values")
    for key in when:
        if kind == ANY:
            if not key.startswith("app.") or key.removeprefix("app.") not in APP_KEYS:
                raise doc.error(f"{path}.when.{key}", "a requirement's `when` names app "
                                "settings only (app.<key>)")
            continue
        is_option = any(key in ADAPTERS[kind].modes[mode].options for mode in modes)
        is_health = (key.startswith("health_check.")
                     and key.removeprefix("health_check.") in ADAPTERS[kind].health_check_keys)
        is_app = key.startswith("app.") and key.removeprefix("app.") in APP_KEYS
        is_transport = key == "client_ip" and when[key] in ADAPTERS[kind].client_ip_transports
        if not (is_option or is_health or is_app or is_transport):
            raise doc.error(f"{path}.when.{key}", f"no mode in {modes} has an option {key!r} "
                            f"(health checks are health_check.<key>, app settings app.<key>, "
                            f"the client-IP transport client_ip: "
                            f"{'|'.join(ADAPTERS[kind].client_ip_transports)})")
    min_samples = item.get("min_samples", 100)
    if not isinstance(min_samples, int) or min_samples < 1:
        raise doc.error(f"{path}.min_samples", "expected a positive integer")
    runtimes = _runtimes(doc, f"{path}.runtimes", item.get("runtimes", []))
    samples = item.get("samples", "judged_requests")
    if samples not in scenario.metrics:
        raise doc.error(f"{path}.samples", f"scenario {scenario.name} has no metric {samples!r}")
    return Expectation(
        id=f"{'requirement' if kind == ANY else kind}.{item['id']}", balancer=kind,
        title=str(item["title"]),
        modes=tuple(modes), suite=str(item.get("suite", "stickiness")),
        scenario=scenario.name, params=params, conditions=tuple(conditions),
        min_samples=min_samples, source=item["source"], citation=dict(citation),
        evidence=str(item.get("evidence", "")).strip(), when=dict(when), samples=samples,
        runtimes=runtimes, file=doc.file,
        line=doc.line(path),
    )


def _runtimes(doc: Doc, path: str, value: Any) -> tuple[str, ...]:
    from harness.runtime import RUNTIMES  # here: the runtimes import the balancers

    if not isinstance(value, list) or not all(v in RUNTIMES for v in value):
        raise doc.error(path, f"expected a list of runtimes out of: {', '.join(RUNTIMES)}")
    return tuple(value)


def load_expectations(path: str | Path) -> list[Expectation]:
    doc = load(path)
    data = doc.data
    if not isinstance(data, dict) or "balancer" not in data or "behaviours" not in data:
        raise doc.error("", "expected a mapping with keys 'balancer' and 'behaviours'")
    kind = data["balancer"]
    if kind not in ADAPTERS and kind != ANY:
        raise doc.error("balancer", f"unknown balancer kind {kind!r}; expected one of: "
                        f"{', '.join(sorted(ADAPTERS))}")
    if not isinstance(data["behaviours"], list):
        raise doc.error("behaviours", "expected a list")
    out = [_expectation(doc, i, item, kind) for i, item in enumerate(data["behaviours"])]
    seen: set[str] = set()
    for i, e in enumerate(out):
        if e.id in seen:
            raise doc.error(f"behaviours[{i}].id", f"duplicate id {e.id!r}")
        seen.add(e.id)
    return out


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int) -> tuple[Expectation, ...]:
    return tuple(load_expectations(path))


def expectations_for(kind: str, mode: str, options: dict[str, Any] | None = None,
                     suite: str | None = None,
                     directory: Path = EXPECTATIONS_DIR) -> list[Expectation]:
    """The expectations that judge a topology of `kind` expected to behave as `mode`."""
    path = directory / f"{kind}.yaml"
    if not path.exists():
        raise InputError(f"no expectations for balancer {kind!r}", file=str(path))
    # Suites ask once per topology: parse each file once (until it changes).
    return [e for e in _load_cached(str(path), path.stat().st_mtime_ns)
            if e.applies_to(mode, options or {}) and (suite is None or e.suite == suite)]


def requirements_for(options: dict[str, Any] | None = None, suite: str | None = None,
                     directory: Path = EXPECTATIONS_DIR) -> list[Expectation]:
    """The requirements (fixtures/expectations/requirements.yaml) that judge a user's
    config in `suite`, whatever its mechanism."""
    path = directory / f"{REQUIREMENTS}.yaml"
    return [e for e in _load_cached(str(path), path.stat().st_mtime_ns)
            if e.applies_to("", options or {}) and (suite is None or e.suite == suite)]
