"""Runtimes turn a Topology into a live Cluster.

    with runtime.start(topology, "containers") as cluster: ...

`start` runs the topology as the runtime can: the containers runtime cannot carry `source`
client addresses (connections arrive from Docker's gateway), so there the same simulated
clients travel as PROXY protocol labels and the balancer is configured to read them
(`runnable`). Callers take the transport from `cluster.topology.client_ip`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.runtime.cluster import Cluster
    from harness.topology import Topology


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that a replica importing harness.runtime.net does not pay for
    # the runtimes, the balancers and the docker SDK on every start.
    if name == "RUNTIMES":
        from harness.runtime.containers import ContainerCluster
        from harness.runtime.processes import ProcessCluster

        globals()["RUNTIMES"] = {"processes": ProcessCluster, "containers": ContainerCluster}
        return globals()["RUNTIMES"]
    if name in ("ProcessCluster", "ContainerCluster"):
        runtimes = __getattr__("RUNTIMES")
        return runtimes["processes" if name == "ProcessCluster" else "containers"]
    if name == "Cluster":
        from harness.runtime.cluster import Cluster

        return Cluster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def carries_client_address(runtime: str, topology: Topology) -> bool:
    """Whether `runtime` gets the simulated client address to the balancer as planned."""
    check = getattr(__getattr__("RUNTIMES")[runtime], "carries_client_address", None)
    return True if check is None else bool(check(topology))


def runnable(topology: Topology, runtime: str) -> Topology:
    """The topology as `runtime` can run it: `source` becomes PROXY protocol (v1) where
    source addresses cannot cross; otherwise the same topology."""
    if carries_client_address(runtime, topology):
        return topology
    from harness.balancers import get_adapter
    from harness.topology import Topology

    if "proxy-protocol" not in get_adapter(topology.kind).client_ip_transports:
        # It cannot read PROXY headers (Caddy 2.6): its clients keep `source`, and their
        # addresses are lost; the checks that need them name the processes runtime.
        return topology
    return Topology(**{**topology.__dict__, "client_ip": "proxy-protocol"})


def start(topology: Topology, runtime: str, **kwargs) -> Cluster:
    """A cluster of `runtime` for `topology` (use it as a context manager)."""
    runtimes = __getattr__("RUNTIMES")
    if runtime not in runtimes:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(runtimes)}")
    return runtimes[runtime](runnable(topology, runtime), **kwargs)


__all__ = ["RUNTIMES", "Cluster", "ContainerCluster", "ProcessCluster", "carries_client_address",
           "runnable", "start"]
