"""Per-session state held in one replica's memory (pure; no I/O)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass
class Lookup:
    session: str
    state: str  # "new" (no cookie), "found" (known here), "lost" (cookie unknown here)
    cart: list[str]


@dataclass
class SessionStore:
    carts: dict[str, list[str]] = field(default_factory=dict)

    def lookup(self, session_id: str | None) -> Lookup:
        """Find the session; a cookie this replica never issued is a visible state loss.

        A real app would start an empty session under the unknown id, so we do too: the
        user's cart is gone, which is what the user of a non-sticky balancer feels.
        """
        if not session_id:
            sid = secrets.token_hex(8)
            self.carts[sid] = []
            return Lookup(sid, "new", self.carts[sid])
        if session_id in self.carts:
            return Lookup(session_id, "found", self.carts[session_id])
        self.carts[session_id] = []
        return Lookup(session_id, "lost", self.carts[session_id])
