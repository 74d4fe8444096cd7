"""Client identity: the address a simulated user appears to come from.

Transport `source` binds the client socket to a loopback address (127.0.0.0/8 is routed to
`lo` on Linux, so any 127.a.b.c works without set-up). Addresses are built so that the part a
balancer hashes can be varied on purpose: `client_address(group, host)` keeps the first three
octets for one `group` and varies the fourth with `host`.
"""

from __future__ import annotations

import ipaddress

TRANSPORTS = ("source",)  # proxy-protocol and xff arrive with the containers runtime
# Client addresses stay below 127.128.0.0, where clusters live (see runtime.net).
FIRST_GROUP_OCTET = 16
GROUPS = (128 - FIRST_GROUP_OCTET) * 256


def client_address(group: int, host: int = 1) -> str:
    """127.<b>.<c>.<host>: one /24 per `group`, `host` in 1..254 within it."""
    if not 0 <= group < GROUPS:
        raise ValueError(f"group must be in 0..{GROUPS - 1}, got {group}")
    if not 1 <= host <= 254:
        raise ValueError(f"host must be in 1..254, got {host}")
    return f"127.{FIRST_GROUP_OCTET + group // 256}.{group % 256}.{host}"


def prefix24(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/24", strict=False))
