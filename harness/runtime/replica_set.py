"""What every runtime's Cluster does the same way: fault records, fresh replica ids, and
draining (a config change plus a graceful reload). A runtime mixes this in and provides
`replicas`, `layout`, `adapter`, `on_event`, `clock`, `t0`, `_next_index`, `_replica(id)`
(raising for an unknown replica) and `reload()`."""

from __future__ import annotations

from harness.errors import ClusterError
from harness.history import FaultRecord


class ReplicaSetMixin:
    def drain(self, replica: str) -> None:
        """Stop sending new sessions to `replica`; sessions pinned to it stay (a reload)."""
        self._replica(replica)
        if self.adapter.no_drain:
            raise ClusterError(f"cannot drain {replica}: {self.adapter.no_drain}")
        assert self.layout
        self.layout.draining.add(replica)
        self.reload()
        self._event("drain", replica)

    def undrain(self, replica: str) -> None:
        """Let `replica` take new sessions again."""
        self._replica(replica)
        assert self.layout
        if replica in self.layout.draining:
            self.layout.draining.discard(replica)
            self.reload()
            self._event("undrain", replica)

    def _fresh_id(self) -> str:
        while f"r{self._next_index}" in self.replicas:
            self._next_index += 1
        return f"r{self._next_index}"

    def _event(self, op: str, target: str, detail: str = "") -> None:
        if self.on_event:
            self.on_event(FaultRecord(t=self.clock() - self.t0, op=op, target=target,
                                      detail=detail))
