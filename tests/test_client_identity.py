"""Client identity without sockets: the PROXY protocol codec, X-Forwarded-For trust, labels."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import InputError
from harness.proxy import client_ip, proxy_protocol
from harness.proxy.proxy_protocol import ProxyProtocolError
from harness.topology import parse_topology
from harness.traffic import identity

ports = st.integers(0, 65535)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
pairs = st.one_of(st.tuples(v4, v4), st.tuples(v6, v6))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 2]), pairs, ports, ports, st.binary(max_size=40))
def test_headers_round_trip_and_need_every_byte(version, addresses, sport, dport, rest):
    src, dst = addresses
    header = proxy_protocol.encode(version, src, dst, sport, dport)
    parsed = proxy_protocol.parse(header + rest)
    assert parsed is not None
    assert (parsed.version, parsed.consumed) == (version, len(header))
    assert ipaddress.ip_address(parsed.source) == ipaddress.ip_address(src)
    assert ipaddress.ip_address(parsed.destination) == ipaddress.ip_address(dst)
    assert (parsed.source_port, parsed.destination_port) == (sport, dport)
    # A header cut anywhere is "need more", never an error or a wrong address.
    for cut in range(len(header)):
        assert proxy_protocol.parse(header[:cut]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_fail_cleanly(data):
    try:
        result = proxy_protocol.parse(data)
    except ProxyProtocolError:
        return
    assert result is None or 0 < result.consumed <= len(data)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"PROXY TCP4 198.51.100.1 127.0.0.1 80\r\n",  # a missing field
    b"PROXY TCP4 2001:db8::1 127.0.0.1 1 80 \r\n",
    b"PROXY TCP6 198.51.100.1 127.0.0.1 1 80\r\n",  # family and addresses disagree
    b"PROXY TCP4 198.51.100.1 127.0.0.1 1 99999\r\n",
    b"PROXY " + b"x" * 120,  # no CRLF within 107 bytes
    proxy_protocol.V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,  # version 3
    proxy_protocol.V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4,  # address block short
])
def test_malformed_headers_are_refused(data):
    with pytest.raises(ProxyProtocolError):
        proxy_protocol.parse(data)


def test_unknown_and_local_keep_the_connection_address():
    assert proxy_protocol.parse(b"PROXY UNKNOWN\r\nGET").source is None
    local = proxy_protocol.V2_SIGNATURE + b"\x20\x00\x00\x00GET"
    header = proxy_protocol.parse(local)
    assert header.source is None and header.consumed == 16


def test_encode_refuses_mixed_families():
    with pytest.raises(ValueError):
        proxy_protocol.encode(1, "198.51.100.1", "::1", 1, 2)
    with pytest.raises(ValueError):
        proxy_protocol.encode(3, "198.51.100.1", "127.0.0.1", 1, 2)


TRUSTED = client_ip.networks(["127.0.0.0/8", "10.0.0.0/8"])


@pytest.mark.parametrize("peer, header, expected", [
    ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
    # A forged leftmost entry: the nearest untrusted hop wins.
    ("127.0.0.1", "203.0.113.9, 198.51.100.7", "198.51.100.7"),
    # Trusted hops on the right are skipped.
    ("127.0.0.1", "198.51.100.7, 10.1.2.3", "198.51.100.7"),
    # An untrusted peer's header is not believed.
    ("192.0.2.50", "198.51.100.7", "192.0.2.50"),
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "not-an-address", "127.0.0.1"),
    # Only trusted hops: the leftmost is as far as we can see.
    ("127.0.0.1", "10.0.0.5, 127.0.0.2", "10.0.0.5"),
])
def test_forwarded_for_trusts_only_trusted_hops(peer, header, expected):
    assert client_ip.from_xff(peer, header, TRUSTED) == expected


def test_networks_name_the_bad_entry():
    with pytest.raises(ValueError, match="'nonsense'"):
        client_ip.networks(["127.0.0.0/8", "nonsense"])


def test_labels_keep_the_grouping_by_slash_24():
    a = identity.label_address(identity.client_address(5, 1))
    b = identity.label_address(identity.client_address(5, 200))
    c = identity.label_address(identity.client_address(6, 1))
    assert identity.prefix24(a) == identity.prefix24(b) != identity.prefix24(c)
    assert all(ipaddress.ip_address(x) in ipaddress.ip_network("100.64.0.0/10")
               for x in (a, b, c))
    assert identity.on_wire("127.16.0.9", "source") == "127.16.0.9"
    assert identity.on_wire("127.16.0.9", "xff") == "100.64.0.9"
    with pytest.raises(ValueError):
        identity.on_wire("127.16.0.9", "carrier-pigeon")
    with pytest.raises(ValueError):
        identity.label_address("127.0.0.1")


def test_topology_client_ip_is_validated_with_its_line():
    topology = parse_topology("balancer: {kind: nginx, mode: ip-hash, client_ip: xff}\n"
                              "replicas: 2\n")
    assert topology.client_ip == "xff"
    assert topology.to_dict()["balancer"]["client_ip"] == "xff"
    with pytest.raises(InputError) as err:
        parse_topology("replicas: 2\nbalancer:\n  kind: haproxy\n  mode: source\n"
                       "  client_ip: smoke-signals\n", "t.yaml")
    assert "t.yaml:5" in str(err.value) and "proxy-protocol" in str(err.value)
