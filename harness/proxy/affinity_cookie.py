"""The proxy's own affinity cookie: `<replica>.<signature>`, signed with HMAC-SHA256 so a
tampered or forged cookie is detected (and the client re-pinned) instead of obeyed. Pure."""

from __future__ import annotations

import hashlib
import hmac

SIG_LEN = 16  # hex characters of the MAC kept in the cookie


def sign(replica: str, secret: bytes) -> str:
    mac = hmac.new(secret, replica.encode(), hashlib.sha256).hexdigest()[:SIG_LEN]
    return f"{replica}.{mac}"


def verify(value: str | None, secret: bytes) -> str | None:
    """The replica a cookie names, or None when it is missing, malformed or not ours."""
    if not value or "." not in value:
        return None
    replica, _, mac = value.rpartition(".")
    expected = sign(replica, secret).rpartition(".")[2]
    return replica if hmac.compare_digest(mac, expected) else None
