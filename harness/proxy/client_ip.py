"""Which address is the client's (pure): the connection's peer, the PROXY protocol source, or
the nearest untrusted hop of X-Forwarded-For.

`xff` trusts the header only when the peer itself is a trusted proxy, then walks the list
from the right (the hop nearest to us) past trusted proxies: the first address that is not
one is the client. This is the rule NGINX's realip module applies with
`real_ip_recursive on`, and what a spoofed leftmost entry cannot get around.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

SOURCES = ("peer", "proxy-protocol", "xff")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """Parsed CIDRs; raises ValueError naming the bad one."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(str(cidr), strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {cidr!r}") from None
    return tuple(out)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def from_xff(peer: str, header: str | None, trusted: Sequence[Network]) -> str:
    if not header or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in header.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage in the header: fall back to the connection
    return hops[0] if hops else peer
