"""Runtimes turn a Topology into a live Cluster."""

from harness.runtime.cluster import Cluster
from harness.runtime.containers import ContainerCluster
from harness.runtime.processes import ProcessCluster

RUNTIMES = {"processes": ProcessCluster, "containers": ContainerCluster}

__all__ = ["RUNTIMES", "Cluster", "ContainerCluster", "ProcessCluster"]
