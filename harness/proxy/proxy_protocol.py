"""The PROXY protocol (HAProxy's spec, versions 1 and 2), sans I/O: encode a header on the
client side, parse one on the server side.

Stickler's clients send it so that a balancer sees a simulated client address (a label from
the documentation ranges) while the packets stay on loopback. The spec:
https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # "a receiver may reject an incomplete line which does not contain the CRLF
# sequence before the 107 bytes" (proxy-protocol.txt, 2.1)
V2_HEADER = 16
V2_MAX = V2_HEADER + 65535


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    consumed: int  # bytes of the header; the stream's own data follows
    version: int
    source: str | None  # None for v1 UNKNOWN and v2 LOCAL: use the connection's own address
    source_port: int | None = None
    destination: str | None = None
    destination_port: int | None = None


def encode_v1(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    if src.version != dst.version:
        raise ValueError("source and destination must be of the same address family")
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {source_port} {destination_port}\r\n".encode("ascii")


def encode_v2(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    if src.version != dst.version:
        raise ValueError("source and destination must be of the same address family")
    family = 0x11 if src.version == 4 else 0x21  # TCP over IPv4 / IPv6
    body = src.packed + dst.packed + struct.pack("!HH", source_port, destination_port)
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(body)) + body


def encode(version: int, source: str, destination: str, source_port: int,
           destination_port: int) -> bytes:
    if version not in (1, 2):
        raise ValueError(f"PROXY protocol version must be 1 or 2, got {version}")
    encoder = encode_v1 if version == 1 else encode_v2
    return encoder(source, destination, source_port, destination_port)


def parse(buffer: bytes) -> ProxyHeader | None:
    """The header at the start of `buffer`, None when more bytes are needed; raises
    ProxyProtocolError when the bytes cannot start a valid header."""
    if buffer[:len(V2_SIGNATURE)] == V2_SIGNATURE[:len(buffer)]:
        return _parse_v2(buffer)
    if b"PROXY "[:len(buffer)] == buffer[:6]:
        return _parse_v1(buffer)
    raise ProxyProtocolError("the connection did not start with a PROXY protocol header")


def _parse_v1(buffer: bytes) -> ProxyHeader | None:
    end = buffer.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buffer) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line longer than 107 bytes")
        return None
    try:
        words = buffer[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 line is not ASCII") from None
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return ProxyHeader(end + 2, 1, None)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"malformed PROXY v1 line: {buffer[:end]!r}")
    _, family, src, dst, sport, dport = words
    version = 4 if family == "TCP4" else 6
    try:
        addresses = [ipaddress.ip_address(a) for a in (src, dst)]
        ports = [int(p) for p in (sport, dport)]
    except ValueError:
        raise ProxyProtocolError(f"malformed PROXY v1 line: {buffer[:end]!r}") from None
    if any(a.version != version for a in addresses) or not all(0 <= p <= 65535 for p in ports):
        raise ProxyProtocolError(f"malformed PROXY v1 line: {buffer[:end]!r}")
    return ProxyHeader(end + 2, 1, str(addresses[0]), ports[0], str(addresses[1]), ports[1])


def _parse_v2(buffer: bytes) -> ProxyHeader | None:
    if len(buffer) < V2_HEADER:
        return None
    ver_cmd, family, length = struct.unpack("!BBH", buffer[12:16])
    if ver_cmd >> 4 != 2 or ver_cmd & 0xF not in (0, 1):
        raise ProxyProtocolError(f"PROXY v2 header with version/command byte {ver_cmd:#x}")
    if len(buffer) < V2_HEADER + length:
        return None
    consumed = V2_HEADER + length
    if ver_cmd & 0xF == 0 or family >> 4 not in (1, 2):  # LOCAL, or not an IP family
        return ProxyHeader(consumed, 2, None)
    size = 4 if family >> 4 == 1 else 16
    if length < 2 * size + 4:
        raise ProxyProtocolError(f"PROXY v2 address block of {length} bytes is too short")
    body = buffer[V2_HEADER:V2_HEADER + 2 * size + 4]
    src = ipaddress.ip_address(body[:size])
    dst = ipaddress.ip_address(body[size:2 * size])
    sport, dport = struct.unpack("!HH", body[2 * size:])
    return ProxyHeader(consumed, 2, str(src), sport, str(dst), dport)
