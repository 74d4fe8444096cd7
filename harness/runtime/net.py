"""Loopback addresses and free ports. Every address here is inside 127.0.0.0/8."""

from __future__ import annotations

import ipaddress
import random
import socket

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# Clusters live in 127.128.0.0/9; simulated clients take addresses below it.
CLUSTER_RANGE = (128, 254)


def ensure_loopback(host: str) -> str:
    if ipaddress.ip_address(host) not in LOOPBACK:
        raise ValueError(f"{host} is not a loopback address; Stickler only talks to 127.0.0.0/8")
    return host


def cluster_address(rng: random.Random | None = None) -> str:
    """A fresh 127.x.y.1 for one cluster, so parallel runs do not collide on ports."""
    rng = rng or random.SystemRandom()
    for _ in range(100):
        host = f"127.{rng.randint(*CLUSTER_RANGE)}.{rng.randint(0, 255)}.1"
        try:
            free_port(host)
            return host
        except OSError:
            continue
    raise OSError("no usable loopback address found")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ensure_loopback(host), 0))
        return s.getsockname()[1]
