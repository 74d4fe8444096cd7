"""Metrics over a History (pure: records in, numbers out; no sockets, no clock).

Every metric judges requests, not connections, and says how many samples it rests on.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from statistics import fmean

from harness.history import RequestRecord
from harness.traffic.cookies import CookieJar, parse_set_cookie
from harness.traffic.identity import prefix24

Key = Callable[[RequestRecord], str]
KEYS: dict[str, Key] = {
    "session": lambda r: r.session,
    "client_ip": lambda r: r.client_ip,
    "prefix24": lambda r: prefix24(r.client_ip),
}


def served(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """Requests that reached a replica (a response naming its replica)."""
    return [r for r in records if r.error is None and r.replica is not None]


def group(records: Iterable[RequestRecord], key: str = "session") -> dict[str, list[RequestRecord]]:
    groups: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in records:
        groups[KEYS[key](r)].append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: (r.t, r.seq))
    return dict(groups)


def stickiness(replicas: list[str]) -> float:
    """Share of a sequence's requests served by its first replica."""
    if not replicas:
        return 1.0
    return replicas.count(replicas[0]) / len(replicas)


def switches(replicas: list[str]) -> int:
    return sum(1 for a, b in zip(replicas, replicas[1:], strict=False) if a != b)


def state_lost(r: RequestRecord) -> bool:
    """The user saw a different cart than the one they built (or the app lost the session).

    A POST that failed where the client could not see (the replica was killed after saving,
    before answering) may have been applied: the cart may then hold up to `cart_uncertain`
    items more than the client counted, and that is not a loss."""
    if r.state == "lost":
        return True
    if r.cart_seen is None or r.cart_expected is None:
        return False
    return not r.cart_expected <= r.cart_seen <= r.cart_expected + r.cart_uncertain


def summarize(records: Iterable[RequestRecord], key: str = "session",
              skip_first: int = 0) -> dict[str, float]:
    """Stickiness, switches, state loss and load, per group of requests (`key`).

    `skip_first` judges each group from its n-th request on (for balancers that cannot
    place a session's first request, such as hashing on a cookie the app has not set yet).
    """
    records = list(records)
    ok = served(records)
    groups = group(ok, key)
    seqs = {k: [r.replica for r in rs][skip_first:] for k, rs in groups.items()}
    seqs = {k: s for k, s in seqs.items() if s}
    stick = [stickiness(s) for s in seqs.values()]
    load = Counter(r.replica for r in ok)
    return {
        "requests": len(records),
        "served": len(ok),
        # No answer at all (refused, reset, timed out) ...
        "errors": sum(1 for r in records if r.error is not None),
        # ... and answers no replica gave (the balancer's own 502/503/504).
        "unserved": sum(1 for r in records if r.error is None and r.replica is None),
        "non_2xx": sum(1 for r in ok if not 200 <= (r.status or 0) < 300),
        "groups": len(seqs),
        # Groups none of whose requests a replica answered (stranded on a dead server).
        "groups_never_served": len(group(records, key)) - len(groups),
        "judged_requests": sum(len(s) for s in seqs.values()),
        "min_stickiness": min(stick) if stick else 0.0,
        "mean_stickiness": fmean(stick) if stick else 0.0,
        "groups_switched": sum(1 for s in seqs.values() if switches(s)),
        "switches": sum(switches(s) for s in seqs.values()),
        "state_losses": sum(1 for r in ok if state_lost(r)),
        "groups_with_state_loss": sum(1 for rs in groups.values() if any(map(state_lost, rs))),
        "replicas_used": len(load),
        "max_replicas_per_group": max((len(set(s)) for s in seqs.values()), default=0),
        "max_load_share": max(load.values()) / len(ok) if ok else 0.0,
        # The balancer reported another client address than the one the harness sent from.
        "client_ip_mismatches": sum(1 for r in ok
                                    if r.app_saw_client and r.app_saw_client != r.client_ip),
    }


def switch_examples(records: Iterable[RequestRecord], key: str = "session",
                    limit: int = 3) -> list[str]:
    """Human-readable evidence: which sessions moved between which replicas, and where."""
    out = []
    for k, rs in group(served(records), key).items():
        path = [r.replica for r in rs]
        if switches(path) == 0:
            continue
        at = next(i for i in range(1, len(path)) if path[i] != path[i - 1])
        lost = sum(1 for r in rs if state_lost(r))
        out.append(f"{key} {k} (client {rs[0].client_ip}): {' -> '.join(_runs(path))}, "
                   f"first switch at request {at}, {lost} request(s) saw lost state")
        if len(out) >= limit:
            break
    return out


def _runs(path: list[str]) -> list[str]:
    runs: list[str] = []
    for replica in path:
        if runs and runs[-1].split("x")[0] == replica:
            name, _, n = runs[-1].partition("x")
            runs[-1] = f"{name}x{int(n or 1) + 1}"
        else:
            runs.append(replica)
    return runs


# ---- cookie behaviour -------------------------------------------------------------------

def set_cookies_named(r: RequestRecord, name: str) -> list[str]:
    return [value for raw in r.set_cookies
            for n, value, _ in [parse_set_cookie(raw)] if n == name]


def names_replica(value: str, replica: str) -> bool:
    """Does a cookie value identify `replica`? (HAProxy insert/rewrite: the id, and with
    maxidle or maxlife `id|<dates>`; prefix: `id~...`; the reference proxy's signed cookie:
    `id.<signature>`; Apache's route cookie: `<session>.id`, the route after the dot)"""
    return value == replica or value.startswith((f"{replica}~", f"{replica}.", f"{replica}|")) \
        or value.endswith(f".{replica}")


def cookie_metrics(records: Iterable[RequestRecord], name: str,
                   replica_ids: Iterable[str] = ()) -> dict[str, float]:
    """How a balancer handles its affinity cookie `name` across the sessions' requests."""
    records = list(records)
    ok = served(records)
    ids = tuple(replica_ids)
    with_cookie = [r for r in ok if r.cookies_sent.get(name)]
    setting = [r for r in ok if set_cookies_named(r, name)]
    names = sum(1 for r in with_cookie if names_replica(r.cookies_sent[name], r.replica or ""))
    private = sum(1 for r in setting if "private" in r.response_headers.get("cache-control", ""))
    no_cache = sum(1 for r in setting
                   if "no-cache" in r.response_headers.get("cache-control", "")
                   or "no-cache" in r.response_headers.get("pragma", ""))
    return {
        # Set-Cookie again although the client already sent a cookie for this replica.
        "cookie_reissued": sum(1 for r in with_cookie
                               if r.cookies_sent[name] in set_cookies_named(r, name)),
        "cookie_set_responses": len(setting),
        # The balancer's own error answers (no replica) that still set the cookie: the
        # client is pinned to wherever that cookie points.
        "cookie_set_unserved": sum(1 for r in records if r.error is None and r.replica is None
                                   and set_cookies_named(r, name)),
        # Distinct values the balancer set: as many as replicas when the value stands for
        # the replica alone (an id, Caddy's HMAC of the upstream), more if it is per session.
        "cookie_distinct_values": len({v for r in setting for v in set_cookies_named(r, name)}),
        "cookie_reached_app": sum(1 for r in ok if name in r.app_cookies_seen),
        "requests_with_cookie": len(with_cookie),
        "cookie_set_private_share": private / len(setting) if setting else 0.0,
        # Set-Cookie with Max-Age or Expires: a persistent cookie, the affinity has a TTL.
        # Without either it is a session cookie, kept until the browser closes.
        "cookie_set_with_expiry": sum(1 for r in setting for raw in r.set_cookies
                                      for n, _, attrs in [parse_set_cookie(raw)]
                                      if n == name and ("max-age" in attrs
                                                        or "expires" in attrs)),
        "cookie_set_no_cache": no_cache,
        # The cookie the client sent names the replica that served it.
        "cookie_names_replica_share": names / len(with_cookie) if with_cookie else 0.0,
        # The app received the balancer's `<server>~` prefix instead of its own value.
        "app_saw_server_prefix": sum(1 for r in ok
                                     if any(str(r.app_cookies_seen.get(name, "")).startswith(
                                         f"{i}~") for i in ids)),
    }


def first_request_moved(records: Iterable[RequestRecord]) -> dict[str, float]:
    """Sessions whose first request was served elsewhere than the rest of the session."""
    groups = group(served(records))
    moved = sum(1 for rs in groups.values()
                if len(rs) > 1 and rs[0].replica != rs[1].replica)
    return {"first_request_moved": moved,
            "first_request_moved_share": moved / len(groups) if groups else 0.0}


# ---- remapping when the replica set changes ---------------------------------------------

def remap_metrics(before: Iterable[RequestRecord], after: Iterable[RequestRecord], key: str,
                  new_replica: str, settled: bool = False) -> dict[str, float]:
    """Which keys (clients, sessions) a change of the replica set moved, and where to.

    Consistent hashing should move only keys that now belong to the new replica
    (`moved_between_old` == 0) and about 1/n of them; a map-based hash moves most keys.
    `settled`: compare where a key ended before (its last request) rather than where it
    began, for sessions whose first request may not be placed yet.
    """
    at = -1 if settled else 0
    first_before = {k: rs[at].replica for k, rs in group(served(before), key).items()}
    first_after = {k: rs[0].replica for k, rs in group(served(after), key).items()}
    common = [k for k in first_before if k in first_after]
    moved = [k for k in common if first_after[k] != first_before[k]]
    to_new = sum(1 for k in moved if first_after[k] == new_replica)
    n = len(common)
    return {
        "remap_keys": n,
        "remapped_share": len(moved) / n if n else 0.0,
        "moved_to_new": to_new,
        "moved_between_old": len(moved) - to_new,
        "new_replica_share": sum(1 for k in common if first_after[k] == new_replica) / n
        if n else 0.0,
    }


def drain_target(before: Iterable[RequestRecord]) -> str:
    """The replica to drain: the one that served the most sessions last (ties: lowest id),
    so that sessions are pinned to it when it drains."""
    last = Counter(rs[-1].replica for rs in group(served(before)).values())
    return min(last, key=lambda rid: (-last[rid], rid or "")) if last else ""


def final_cookies(records: Iterable[RequestRecord]) -> dict[str, dict[str, str]]:
    """Each session's cookie jar after its last request: what it would send next."""
    jars: dict[str, dict[str, str]] = {}
    for session, rs in group(records).items():
        jar = CookieJar(dict(rs[-1].cookies_sent))
        jar.update(rs[-1].set_cookies)
        jars[session] = dict(jar.cookies)
    return jars


def drain_metrics(before: Iterable[RequestRecord], after: Iterable[RequestRecord],
                  target: str) -> dict[str, float]:
    """After `target` was drained: did its sessions stay, and did new sessions avoid it?"""
    before_groups = group(served(before))
    pinned = {s for s, rs in before_groups.items() if rs[-1].replica == target}
    ok_after = served(after)
    kept = [r for r in ok_after if r.session in pinned]
    new = [r for r in ok_after if r.session not in before_groups]
    return {
        "drained_sessions": len(pinned),
        "drained_kept_share": (sum(1 for r in kept if r.replica == target) / len(kept)
                               if kept else 0.0),
        "new_sessions": len({r.session for r in new}),
        "new_on_drained": sum(1 for r in new if r.replica == target),
    }
