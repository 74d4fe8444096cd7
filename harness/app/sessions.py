"""Per-session state: in one replica's memory (the default, pure) or in a shared Redis.

A store answers `lookup(session id) -> Lookup` and `save(lookup)` after the cart changed.
The memory store is what the seeds' sticky app does: a replica knows only the sessions it
issued. The Redis store is the articles' "externalized session storage": every replica
sees every session, so a switch of replica loses nothing (harness/app/redis_store.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass
class Lookup:
    session: str
    state: str  # "new" (no cookie), "found" (known here), "lost" (cookie unknown here)
    cart: list[str]


def new_session_id() -> str:
    return secrets.token_hex(8)


class StoreUnavailable(Exception):
    """The shared store did not answer: the app answers 503 (the articles' single point of
    failure)."""


@dataclass
class SessionStore:
    carts: dict[str, list[str]] = field(default_factory=dict)

    def lookup_now(self, session_id: str | None) -> Lookup:
        """Find the session; a cookie this replica never issued is a visible state loss.

        A real app would start an empty session under the unknown id, so we do too: the
        user's cart is gone, which is what the user of a non-sticky balancer feels.
        """
        if not session_id:
            sid = new_session_id()
            self.carts[sid] = []
            return Lookup(sid, "new", self.carts[sid])
        if session_id in self.carts:
            return Lookup(session_id, "found", self.carts[session_id])
        self.carts[session_id] = []
        return Lookup(session_id, "lost", self.carts[session_id])

    async def lookup(self, session_id: str | None) -> Lookup:
        return self.lookup_now(session_id)

    async def save(self, found: Lookup) -> None:
        """Nothing to do: the Lookup's cart is the stored list itself."""

    async def count(self) -> int:
        return len(self.carts)

    async def close(self) -> None:
        pass
