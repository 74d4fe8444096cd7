"""Runtimes turn a Topology into a live Cluster."""

from harness.runtime.cluster import Cluster
from harness.runtime.processes import ProcessCluster

RUNTIMES = {"processes": ProcessCluster}

__all__ = ["RUNTIMES", "Cluster", "ProcessCluster"]
