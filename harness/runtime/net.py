"""Loopback addresses and free ports. Every address here is inside 127.0.0.0/8."""

from __future__ import annotations

import ipaddress
import os
import random
import socket

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# Clusters live in 127.128.0.0/9; simulated clients take addresses below it.
CLUSTER_RANGE = (128, 254)


def ensure_loopback(host: str) -> str:
    if ipaddress.ip_address(host) not in LOOPBACK:
        raise ValueError(f"{host} is not a loopback address; Stickler only talks to 127.0.0.0/8")
    return host


def in_container() -> bool:
    """True inside a Stickler image (compose/images/node), where a cluster's parts talk over
    a private Docker network instead of loopback."""
    return os.environ.get("STICKLER_IN_CONTAINER") == "1"


def ensure_cluster_host(host: str) -> str:
    """A loopback address; inside a Stickler container also a private-network address (or
    0.0.0.0 to listen), since there the balancer reaches replicas over the Docker network."""
    if in_container():
        addr = ipaddress.ip_address(host)
        if addr.is_private or addr.is_unspecified:
            return host
        raise ValueError(f"{host} is not a private address")
    return ensure_loopback(host)


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


def free_port(host: str, taken: set[int] | frozenset[int] = frozenset()) -> int:
    """A port nobody listens on now and that is not in `taken`.

    The port is released before it is returned, so a caller that hands out several ports
    before their owners bind them must pass the ones already handed out: the kernel may
    otherwise offer the same port twice, and the later owner fails with EADDRINUSE."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ensure_loopback(host), 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
    raise OSError(f"no free port on {host} outside the {len(taken)} already handed out")
