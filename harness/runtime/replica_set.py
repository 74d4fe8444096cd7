"""What every runtime's Cluster does the same way: the context-manager lifecycle, fault
records, fresh replica ids, adding and removing replicas and draining them (each a config
change plus a graceful reload). A runtime mixes this in and provides `topology`,
`replicas`, `layout`, `adapter`, `on_event`, `clock`, `t0`, `_next_index`, `start()`,
`stop()`, `reload()`, `_start_replica(id)` and `_discard(part)`, which stops and removes
one replica's parts."""

from __future__ import annotations

from harness.errors import ClusterError
from harness.history import FaultRecord
from harness.runtime import reaper
from harness.runtime.store import NAME as STORE
from harness.topology import Replica


class ReplicaSetMixin:
    def __enter__(self):
        reaper.install()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def replica_ids(self) -> list[str]:
        return [r.id for r in self.topology.replicas]

    def add_replica(self, replica: str | None = None) -> str:
        rid = replica or self._fresh_id()
        if rid in self.replicas:
            raise ValueError(f"replica {rid!r} exists already")
        self._start_replica(rid)
        self.topology = self.topology.with_replicas((*self.topology.replicas, Replica(rid)))
        self.reload()
        self._event("add", rid)
        return rid

    def remove_replica(self, replica: str) -> None:
        """Take it out of the config first (a graceful reload), then stop it."""
        part = self._replica(replica)
        self.topology = self.topology.with_replicas(
            tuple(r for r in self.topology.replicas if r.id != replica))
        self.reload()
        self._discard(part)
        del self.replicas[replica]
        assert self.layout
        self.layout.replicas.pop(replica, None)
        self.layout.draining.discard(replica)
        self._event("remove", replica)

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

    def _replica(self, replica: str):
        try:
            return self.replicas[replica]
        except KeyError:
            store = [STORE] if getattr(self, "store", None) is not None else []
            raise KeyError(f"no replica {replica!r}; have {sorted(self.replicas) + store}") \
                from None

    def _part(self, name: str):
        """A fault's target: a replica, or the shared session store (`store`)."""
        if name == STORE and getattr(self, "store", None) is not None:
            return self.store
        return self._replica(name)

    def _fresh_id(self) -> str:
        while f"r{self._next_index}" in self.replicas:
            self._next_index += 1
        return f"r{self._next_index}"

    def _event(self, op: str, target: str, detail: str = "") -> None:
        if self.on_event:
            self.on_event(FaultRecord(t=self.clock() - self.t0, op=op, target=target,
                                      detail=detail))
