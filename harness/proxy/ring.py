"""A consistent-hash ring (ketama-style virtual nodes), pure.

Adding a replica moves only the keys the new replica takes; removing one moves only its
own keys. Tests check both properties with hypothesis.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

VNODES = 160  # points per replica: ketama's default density


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, replicas: Iterable[str] = (), vnodes: int = VNODES):
        self.vnodes = vnodes
        self._points: list[int] = []
        self._owners: list[str] = []
        self._members: set[str] = set()
        for replica in replicas:
            self.add(replica)

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self._members)

    def add(self, replica: str) -> None:
        if replica in self._members:
            return
        self._members.add(replica)
        for i in range(self.vnodes):
            point = _point(f"{replica}#{i}")
            at = bisect.bisect(self._points, point)
            self._points.insert(at, point)
            self._owners.insert(at, replica)

    def remove(self, replica: str) -> None:
        if replica not in self._members:
            return
        self._members.discard(replica)
        keep = [(p, o) for p, o in zip(self._points, self._owners, strict=True) if o != replica]
        self._points = [p for p, _ in keep]
        self._owners = [o for _, o in keep]

    def lookup(self, key: str, skip: frozenset[str] | set[str] = frozenset()) -> str | None:
        """The replica owning `key`: the first point clockwise, passing over `skip`
        (unhealthy replicas), so their keys fall to the next replica on the ring."""
        if not self._points or not self._members - set(skip):
            return None
        start = bisect.bisect(self._points, _point(key)) % len(self._points)
        for i in range(len(self._points)):
            owner = self._owners[(start + i) % len(self._points)]
            if owner not in skip:
                return owner
        return None
