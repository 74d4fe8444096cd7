"""Client identity: the address a simulated user appears to come from.

Transport `source` binds the client socket to a loopback address (127.0.0.0/8 is routed to
`lo` on Linux, so any 127.a.b.c works without set-up). Addresses are built so that the part a
balancer hashes can be varied on purpose: `client_address(group, host)` keeps the first three
octets for one `group` and varies the fourth with `host`.

The other transports connect from 127.0.0.1 and carry the address as a label:
`proxy-protocol` (a PROXY v1 line before the first request of each connection),
`proxy-protocol-v2` (the binary v2 header) and `xff` (an X-Forwarded-For hop). Labels come
from 100.64.0.0/10, one /24 per group as with loopback addresses, so that a balancer that
keys on three octets (NGINX ip_hash) sees the same grouping on every transport.
"""

from __future__ import annotations

import ipaddress

TRANSPORTS = ("source", "proxy-protocol", "proxy-protocol-v2", "xff")
PROXY_VERSIONS = {"proxy-protocol": 1, "proxy-protocol-v2": 2}
LABEL_BASE = int(ipaddress.ip_address("100.64.0.0"))
LABEL_GROUPS = 2 ** 22 // 256  # 100.64.0.0/10 holds 16384 /24s
# Client addresses stay below 127.128.0.0, where clusters live (see runtime.net), and there
# are no more groups than labels, so every planned client can travel on every transport.
FIRST_GROUP_OCTET = 16
GROUPS = min((128 - FIRST_GROUP_OCTET) * 256, LABEL_GROUPS)


def client_address(group: int, host: int = 1) -> str:
    """127.<b>.<c>.<host>: one /24 per `group`, `host` in 1..254 within it."""
    if not 0 <= group < GROUPS:
        raise ValueError(f"group must be in 0..{GROUPS - 1}, got {group}")
    if not 1 <= host <= 254:
        raise ValueError(f"host must be in 1..254, got {host}")
    return f"127.{FIRST_GROUP_OCTET + group // 256}.{group % 256}.{host}"


def prefix24(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/24", strict=False))


def label_address(loopback: str) -> str:
    """The label in 100.64.0.0/10 that stands for client address `loopback` on the wire."""
    parts = [int(x) for x in loopback.split(".")]
    if len(parts) != 4 or parts[0] != 127 or parts[1] < FIRST_GROUP_OCTET:
        raise ValueError(f"not a client address made by client_address(): {loopback!r}")
    group = (parts[1] - FIRST_GROUP_OCTET) * 256 + parts[2]
    if group >= LABEL_GROUPS:
        raise ValueError(f"client group {group} has no label (at most {LABEL_GROUPS} groups)")
    return str(ipaddress.ip_address(LABEL_BASE + group * 256 + parts[3]))


def on_wire(loopback: str, transport: str) -> str:
    """The address the balancer should see for a client planned at `loopback`."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown client-IP transport {transport!r}; expected one of "
                         f"{', '.join(TRANSPORTS)}")
    return loopback if transport == "source" else label_address(loopback)
