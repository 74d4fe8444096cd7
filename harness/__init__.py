"""Stickler: end-to-end test harness for load-balancer session affinity."""

__version__ = "0.1.0"
