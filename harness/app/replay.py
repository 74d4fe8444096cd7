"""The fixture app's fly-replay behaviours from the sticky-sessions blueprint (pure).

- `pin-cookie`: the blueprint's middleware. A request whose `fly-machine-id` cookie names
  another replica is answered 307 with `fly-replay: instance=<that replica>`; otherwise the
  app serves it and (re)sets the cookie to itself.
- `hash`: the blueprint's "determine target" variant: the session cookie is hashed onto the
  replicas (`peers`); a request for another replica's sessions is replayed there.
- `leader`: writes (POST) go to one `leader` replica; reads are served where they land.
- `always`: every request that was not replayed yet is answered with the topology's
  `replay_options` as the whole fly-replay (e.g. `region=lhr` or `elsewhere=true`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.proxy.ring import HashRing

MODES = ("", "pin-cookie", "hash", "leader", "always")
PIN_COOKIE = "fly-machine-id"


def replay_target(mode: str, replica: str, method: str, cookies: Mapping[str, str],
                  session_cookie: str, peers: Sequence[str] = (),
                  leader: str | None = None) -> str | None:
    """The replica this request should be replayed to, or None to serve it here."""
    if mode == "pin-cookie":
        pinned = cookies.get(PIN_COOKIE)
        return pinned if pinned and pinned != replica else None
    if mode == "hash":
        session = cookies.get(session_cookie)
        if not session or not peers:
            return None
        target = HashRing(peers).lookup(session)
        return target if target != replica else None
    if mode == "leader":
        return leader if method == "POST" and leader and leader != replica else None
    return None
