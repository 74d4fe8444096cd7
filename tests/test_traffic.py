"""Pure parts of the traffic layer: addresses, cookie jar, seeded plans, history files."""

import random

import pytest

from harness.errors import InputError
from harness.history import FaultRecord, HistoryWriter, RequestRecord, read_history
from harness.runtime.net import ensure_loopback
from harness.traffic import plans
from harness.traffic.cookies import CookieJar, parse_set_cookie
from harness.traffic.identity import GROUPS, client_address, prefix24


def test_client_addresses_stay_in_loopback_below_clusters():
    assert client_address(0, 1) == "127.16.0.1"
    assert client_address(257, 9) == "127.17.1.9"
    assert prefix24(client_address(5, 1)) == prefix24(client_address(5, 200))
    assert prefix24(client_address(5, 1)) != prefix24(client_address(6, 1))
    with pytest.raises(ValueError):
        client_address(0, 255)
    last = client_address(GROUPS - 1, 1)
    assert int(last.split(".")[1]) < 128


def test_every_client_address_has_a_label_on_every_transport():
    # A population once drew groups no label could stand for: those users crashed in
    # containers (PROXY protocol) and the hot client of one-hot-client was never sent.
    from harness.traffic.identity import TRANSPORTS, on_wire

    for group in (0, GROUPS // 2, GROUPS - 1):
        address = client_address(group, 254)
        assert {prefix24(on_wire(address, t)) for t in TRANSPORTS[1:]} == \
            {prefix24(on_wire(address, "proxy-protocol"))}
    with pytest.raises(ValueError):
        client_address(GROUPS, 1)


def test_a_crashed_locust_user_is_found_in_the_log():
    from harness.traffic.load import user_crash

    log = ("[2026] vm/INFO/locust.runners: Ramping to 60 users\n"
           "Traceback (most recent call last):\n"
           '  File "locustfile.py", line 196, in on_start\n'
           "ValueError: client group 23025 has no label\n"
           "2026-11-25T18:48:15Z <Greenlet at 0x7f: run_user(<locustfile.Shopper object at "
           "0x7f>)> failed with ValueError\n"
           "[2026] vm/INFO/locust.main: Shutting down (exit code 1)\n")
    found = user_crash(log)
    assert found.startswith("Traceback") and "ValueError: client group 23025" in found
    assert user_crash("[2026] vm/INFO/locust.main: Shutting down (exit code 1)\n") == ""


def test_loopback_guard():
    assert ensure_loopback("127.9.9.9") == "127.9.9.9"
    with pytest.raises(ValueError, match="not a loopback"):
        ensure_loopback("192.0.2.1")


class _KernelOffering:
    """Stands in for socket.socket: bind(port 0) gets the next port from a fixed list."""

    def __init__(self, ports):
        self.ports = iter(ports)

    def __call__(self, *args):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def bind(self, address):
        self.port = next(self.ports)

    def getsockname(self):
        return ("127.200.0.1", self.port)


def test_free_port_skips_ports_already_handed_out(monkeypatch):
    # The kernel may offer a released port again; a cluster once gave its balancer's port
    # to a replica, and the balancer failed with EADDRINUSE (CI, stop 10).
    from harness.runtime import net

    monkeypatch.setattr(net.socket, "socket", _KernelOffering([5000, 5000, 5001]))
    assert net.free_port("127.200.0.1") == 5000
    assert net.free_port("127.200.0.1", taken={5000}) == 5001
    monkeypatch.setattr(net.socket, "socket", _KernelOffering([5000] * 100))
    with pytest.raises(OSError, match="no free port on 127.200.0.1"):
        net.free_port("127.200.0.1", taken={5000})


def test_set_cookie_parsing_and_jar():
    assert parse_set_cookie("SRVID=r1; path=/; HttpOnly") == ("SRVID", "r1",
                                                              {"path": "/", "httponly": ""})
    jar = CookieJar()
    jar.update(["a=1; Path=/", 'b="2"'])
    assert jar.header() == "a=1; b=2"
    jar.update(["a=; Max-Age=0"])
    assert jar.cookies == {"b": "2"}


def test_plans_are_seeded():
    a = plans.sessions(random.Random(3), 5, 6)
    b = plans.sessions(random.Random(3), 5, 6)
    c = plans.sessions(random.Random(4), 5, 6)
    assert a == b and a != c
    assert all(len(p.steps) == 6 and p.steps[0].method == "POST" for p in a)
    assert len({prefix24(p.client_ip) for p in a}) == 5
    same = plans.sessions(random.Random(3), 5, 2, same_prefix_group=9)
    assert len({prefix24(p.client_ip) for p in same}) == 1
    assert plans.sessions(random.Random(1), 1, 1, first="GET")[0].steps[0].method == "GET"
    with pytest.raises(ValueError):
        plans.sessions(random.Random(1), 1, 1, connection="pipelined")
    (paused,) = plans.sessions(random.Random(1), 1, 3, pause=(2, 1.5))
    assert [s.method for s in paused.steps][2] == plans.PAUSE and paused.steps[2].path == "1.5"
    assert len(paused.steps) == 4


def test_history_roundtrip_and_bad_lines(tmp_path):
    path = tmp_path / "h.jsonl"
    rec = RequestRecord(t=0.1, duration=0.01, scenario="s", user="u", session="s1", seq=0,
                        client_ip="127.16.0.1", transport="source", connection="new",
                        method="GET", path="/cart", status=200, replica="r1")
    with HistoryWriter(path) as h:
        h.write(rec)
        h.write(FaultRecord(t=0.2, op="kill", target="r1"))
    back = list(read_history(path))
    assert back[0] == rec and back[1].op == "kill"
    with path.open("a") as f:
        f.write('{"type": "request", "t": 1\n')
    with pytest.raises(InputError) as info:
        list(read_history(path))
    assert info.value.line == 3


def test_stagger_starts_sessions_in_order_and_resumes_them_reversed():
    # Planned times (requests taking no time): session i starts at i * stagger, and comes
    # back from its pause at pause + (count - 1 - i) * stagger: the reverse order.
    stagger, pause, count = 0.2, 9.0, 12
    out = plans.sessions(random.Random(1), count, 6, pause=(3, pause), stagger=stagger)
    starts, resumes = [], []
    for plan in out:
        waits = [float(s.path) for s in plan.steps if s.method == plans.PAUSE]
        requests = [s for s in plan.steps if s.method != plans.PAUSE]
        assert len(requests) == 6 and plan.steps[-1].method != plans.PAUSE
        start = waits[0] if len(waits) == 2 else 0.0
        starts.append(start)
        resumes.append(start + waits[-1])
    assert starts == sorted(starts) and starts[1] == pytest.approx(stagger)
    assert resumes == sorted(resumes, reverse=True)
    gaps = [b - a for a, b in zip(resumes[1:], resumes[:-1], strict=True)]
    assert gaps == pytest.approx([stagger] * 11)
    assert min(resumes) == pytest.approx(pause)
    # No stagger: the plans are what they were.
    assert plans.sessions(random.Random(1), 3, 6, pause=(3, pause))[2].steps[3] == \
        plans.Step(plans.PAUSE, "9")
