"""What a response tells about affinity, filled into a RequestRecord (pure; any driver)."""

from __future__ import annotations

import json
from collections.abc import Callable

from harness.history import RequestRecord

KEPT_RESPONSE_HEADERS = ("cache-control", "pragma", "location", "x-replica",
                         "x-stickler-config", "x-stickler-route",
                         # what the reference proxy told the app about replays (app echoes)
                         "x-seen-fly-replay-src", "x-seen-fly-replay-cache-status",
                         "x-seen-fly-replay-failed", "x-seen-fly-preferred-instance-unavailable")


def observe(record: RequestRecord, status: int, header: Callable[[str], str | None],
            set_cookies: list[str], body: bytes) -> RequestRecord:
    """Fill status, serving replica, Set-Cookie values and the app's view of the session.

    `header(name)` returns a response header (case-insensitive) or None; `body` is the
    fixture app's JSON (anything else leaves the app fields empty).
    """
    record.status = status
    record.replica = header("X-Replica")
    record.set_cookies = list(set_cookies)
    record.response_headers = {h: v for h in KEPT_RESPONSE_HEADERS
                               if (v := header(h)) is not None}
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        return record
    record.state = data.get("state")
    cart = data.get("cart")
    record.cart_seen = len(cart) if isinstance(cart, list) else None
    seen = data.get("cookies_seen")
    record.app_cookies_seen = seen if isinstance(seen, dict) else {}
    xff = data.get("x_forwarded_for")
    if isinstance(xff, str) and xff:
        record.app_saw_client = xff.split(",")[-1].strip()
    return record
