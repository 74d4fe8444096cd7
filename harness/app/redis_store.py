"""Sessions in a shared Redis (the articles' "externalized session storage"): one JSON cart
per session under `stickler:session:<id>`, with a TTL so a long run does not grow Redis
without bound. Every replica of a cluster points at the same Redis, started by the runtime.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from harness.app.sessions import Lookup, StoreUnavailable, new_session_id

PREFIX = "stickler:session:"
TTL_S = 6 * 3600


def parse_url(url: str) -> tuple[str, int, int]:
    """redis://host:port[/db] -> (host, port, db); ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"expected redis://host:port[/db], got {url!r}")
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"the database in {url!r} must be a number")
    return parts.hostname, parts.port or 6379, int(db)


class RedisSessionStore:
    def __init__(self, url: str):
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        host, port, db = parse_url(url)
        self.url = url
        # Short timeouts and one immediate retry (redis-py 6+ retries 3 times with backoff
        # by default): a dead or hung Redis must turn into a quick 503, not a wait that
        # looks like a hung replica, while a pooled connection broken by a Redis restart
        # gets one reconnect instead of failing a request.
        self.redis = redis.Redis(host=host, port=port, db=db, socket_connect_timeout=1.0,
                                 socket_timeout=2.0, retry=Retry(NoBackoff(), 1),
                                 decode_responses=True)

    async def _call(self, op, *args):
        from redis.exceptions import RedisError

        try:
            return await op(*args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"session store {self.url}: {exc}") from exc

    async def lookup(self, session_id: str | None) -> Lookup:
        if not session_id:
            sid = new_session_id()
            await self._call(self.redis.set, PREFIX + sid, "[]", TTL_S)
            return Lookup(sid, "new", [])
        raw = await self._call(self.redis.get, PREFIX + session_id)
        if raw is None:  # Redis lost it (restarted without persistence) or never had it
            await self._call(self.redis.set, PREFIX + session_id, "[]", TTL_S)
            return Lookup(session_id, "lost", [])
        return Lookup(session_id, "found", json.loads(raw))

    async def save(self, found: Lookup) -> None:
        await self._call(self.redis.set, PREFIX + found.session, json.dumps(found.cart), TTL_S)

    async def count(self) -> int:
        keys = await self._call(self.redis.keys, PREFIX + "*")
        return len(keys)

    async def close(self) -> None:
        await self.redis.aclose() if hasattr(self.redis, "aclose") else await self.redis.close()
