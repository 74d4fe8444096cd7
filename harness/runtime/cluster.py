"""The Cluster protocol: a handle on a running topology, whatever runtime started it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from harness.topology import Topology

if TYPE_CHECKING:
    from harness.balancers import Endpoint


class Cluster(Protocol):
    topology: Topology
    runtime: str  # "processes" or "containers"

    @property
    def url(self) -> str: ...  # base URL of the balancer, on 127.0.0.0/8

    @property
    def replica_ids(self) -> list[str]: ...

    def replica_endpoint(self, replica: str) -> Endpoint: ...  # the harness's way to it, direct
    def versions(self) -> dict[str, str]: ...
    def logs(self, name: str) -> str: ...

    # Faults. Each records a FaultRecord through the cluster's event sink.
    def kill(self, replica: str) -> None: ...
    def pause(self, replica: str) -> None: ...
    def resume(self, replica: str) -> None: ...
    def restart(self, replica: str) -> None: ...
    def disconnect(self, replica: str) -> None: ...  # host gone: its address goes silent
    def reconnect(self, replica: str) -> None: ...
    def add_replica(self, replica: str | None = None) -> str: ...
    def remove_replica(self, replica: str) -> None: ...
    def drain(self, replica: str) -> None: ...  # no new sessions; pinned ones stay
    def undrain(self, replica: str) -> None: ...
