"""fly-replay: parsing an app's replay instruction and the headers that go with a replay
(pure). Quotes from Fly.io's docs are in docs/research/fly-citations.md, items 3 to 7.

An app answers with a `fly-replay` response header (`instance=r2;state=x`) or with a body of
content type `application/vnd.fly.replay+json`; the proxy then sends the original request
to the target instead of returning that response.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

JSON_TYPE = "application/vnd.fly.replay+json"
MAX_REPLAY_BODY = 1_000_000  # "Requests larger than 1MB cannot be replayed" (10^6: see note)
FALLBACKS = ("", "force_self", "prefer_self")
HEADER_FIELDS = ("instance", "prefer_instance", "region", "app", "elsewhere", "state",
                 "timeout", "fallback")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")


class ReplayError(ValueError):
    """An unusable replay instruction from the app (answered to the client as a 502)."""


@dataclass(frozen=True)
class Transform:
    path: str | None = None
    delete_headers: tuple[str, ...] = ()
    set_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Replay:
    instance: str | None = None
    prefer_instance: str | None = None
    regions: tuple[str, ...] = ()  # in order of preference; "any" matches every replica
    elsewhere: bool = False
    state: str | None = None
    timeout_s: float | None = None
    fallback: str = ""
    transform: Transform = field(default_factory=Transform)
    cache: dict = field(default_factory=dict)  # JSON form: prefix, ttl, invalidate, allow_bypass

    def fields(self) -> dict[str, str]:
        """The fields that were set, for cache eligibility checks."""
        out = {k: str(v) for k, v in (("instance", self.instance), ("state", self.state),
                                      ("prefer_instance", self.prefer_instance),
                                      ("timeout", self.timeout_s), ("fallback", self.fallback))
               if v}
        if self.transform != Transform():
            out["transform"] = "set"
        return out


def _duration(text: str) -> float:
    match = DURATION.match(text.strip())
    if not match:
        raise ReplayError(f"timeout must be like 10s or 800ms, got {text!r}")
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "ms" else value


def _split_fields(header: str) -> dict[str, str]:
    """`instance=r2;region="ams,any"` -> fields; quoted values may hold commas."""
    out: dict[str, str] = {}
    for part in re.findall(r'[^;"]+(?:"[^"]*"[^;"]*)*', header):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ReplayError(f"expected key=value in fly-replay, got {part.strip()!r}")
        out[key.strip().lower()] = value.strip().strip('"')
    return out


def _build(fields: dict, transform: Transform, cache: dict) -> Replay:
    unknown = [k for k in fields if k not in HEADER_FIELDS]
    if unknown:
        raise ReplayError(f"unknown fly-replay field(s): {', '.join(unknown)}; expected "
                          f"{', '.join(HEADER_FIELDS)}")
    if fields.get("app"):
        raise ReplayError("replaying to another app is not supported by the reference proxy")
    fallback = str(fields.get("fallback") or "")
    if fallback not in FALLBACKS:
        raise ReplayError(f"fallback must be force_self or prefer_self, got {fallback!r}")
    region = str(fields.get("region") or "")
    elsewhere = str(fields.get("elsewhere", "")).lower() in ("true", "1", "yes")
    replay = Replay(
        instance=fields.get("instance") or None,
        prefer_instance=fields.get("prefer_instance") or None,
        regions=tuple(r.strip() for r in region.split(",") if r.strip()),
        elsewhere=elsewhere,
        state=fields.get("state") or None,
        timeout_s=_duration(str(fields["timeout"])) if fields.get("timeout") else None,
        fallback=fallback, transform=transform, cache=cache,
    )
    if not (replay.instance or replay.prefer_instance or replay.regions or replay.elsewhere):
        raise ReplayError("fly-replay names no target (instance, prefer_instance, region or "
                          "elsewhere)")
    return replay


def parse_header(value: str) -> Replay:
    return _build(_split_fields(value), Transform(), {})


def parse_json(body: bytes) -> Replay:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise ReplayError(f"{JSON_TYPE} body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReplayError(f"{JSON_TYPE} body must be an object")
    raw = data.pop("transform", None) or {}
    cache = data.pop("cache", None) or {}
    if "allow_bypass" in data:  # the docs name it without saying where; accept it at top level
        cache = {**cache, "allow_bypass": bool(data.pop("allow_bypass"))}
    if not isinstance(raw, dict) or not isinstance(cache, dict):
        raise ReplayError("transform and cache must be objects")
    try:
        transform = Transform(
            path=raw.get("path"),
            delete_headers=tuple(str(h).lower() for h in raw.get("delete_headers", [])),
            set_headers=tuple((str(h["name"]), str(h["value"]))
                              for h in raw.get("set_headers", [])),
        )
    except (KeyError, TypeError):
        raise ReplayError("transform.set_headers must be a list of {name, value}") from None
    return _build({k.lower(): v for k, v in data.items()}, transform, cache)


def src_header(instance: str, region: str | None, t_us: int, state: str | None) -> str:
    """`fly-replay-src` for the replayed request: instance, region, t (µs), state."""
    parts = [f"instance={instance}", f"region={region or ''}", f"t={t_us}"]
    if state:
        parts.append(f"state={state}")
    return ";".join(parts)


def failed_header(replay: Replay, source: str, reason: str, elapsed_ms: int) -> str:
    """`fly-replay-failed` on a fallback delivery back to the replay's source."""
    parts = []
    if replay.instance or replay.prefer_instance:
        parts.append(f"instance={replay.instance or replay.prefer_instance}")
    if replay.regions:
        parts.append(f"region={','.join(replay.regions)}")
    parts += [f"replay_source={source}", f"reason={reason}", f"elapsed_ms={elapsed_ms}"]
    return ";".join(parts)


def apply_transform(path_qs: str, headers: dict[str, str],
                    transform: Transform) -> tuple[str, dict[str, str]]:
    """The replayed request's path and headers (names compared case-insensitively)."""
    drop = {h.lower() for h in transform.delete_headers}
    out = {k: v for k, v in headers.items() if k.lower() not in drop}
    for name, value in transform.set_headers:
        out = {k: v for k, v in out.items() if k.lower() != name.lower()}
        out[name] = value
    return transform.path or path_qs, out


def choose_target(replay: Replay, backends: list, source: str, hard_limit: int,
                  rng) -> tuple[str | None, dict[str, str], str]:
    """Where a replay goes: (replica or None, extra request headers, reason).

    `instance` is that replica or nothing (the caller retries until the timeout);
    `prefer_instance` falls back to the other candidates with
    fly-preferred-instance-unavailable; `region` lists regions in order of preference ("any"
    matches every replica); `elsewhere` excludes the replica that asked for the replay.
    Among candidates, the least loaded wins, random among equals.
    """
    available = [b for b in backends if b.healthy and b.inflight < hard_limit]
    if replay.instance:
        hit = [b for b in available if b.id == replay.instance]
        return (hit[0].id, {}, "instance") if hit else (None, {}, "no_candidate")
    extra: dict[str, str] = {}
    if replay.prefer_instance:
        hit = [b for b in available if b.id == replay.prefer_instance]
        if hit:
            return hit[0].id, {}, "prefer_instance"
        extra = {"fly-preferred-instance-unavailable": replay.prefer_instance}
    pool = [b for b in available if not (replay.elsewhere and b.id == source)]
    groups = [pool] if not replay.regions else [
        pool if region == "any" else [b for b in pool if b.region == region]
        for region in replay.regions]
    for group in groups:
        if group:
            low = min(b.inflight for b in group)
            return rng.choice([b for b in group if b.inflight == low]).id, extra, "balanced"
    return None, extra, "no_candidate"
