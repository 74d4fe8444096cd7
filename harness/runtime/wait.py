"""Waiting strategies: poll for an event with a deadline instead of sleeping blindly."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.proxy import proxy_protocol


def until(predicate: Callable[[], bool], timeout: float, what: str,
          interval: float = 0.02, check: Callable[[], None] | None = None) -> None:
    """Poll `predicate` until true; `check` may raise early (a process that died)."""
    deadline = time.monotonic() + timeout
    while True:
        if check:
            check()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _get(host: str, port: int, path: str, timeout: float, proxy_header: bool,
         tls: bool = False) -> tuple[http.client.HTTPResponse, bytes] | None:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    if tls:  # a user's TLS frontend: its certificate is not checked (harness/traffic)
        import ssl

        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    try:
        if proxy_header:
            http.client.HTTPConnection.connect(conn)
            source_port = conn.sock.getsockname()[1]
            conn.sock.sendall(proxy_protocol.encode_v1("127.0.0.1", host, source_port, port))
            if tls:
                conn.sock = conn._context.wrap_socket(conn.sock, server_hostname=host)
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def http_get(host: str, port: int, path: str = "/", timeout: float = 1.0,
             proxy_header: bool = False, tls: bool = False) -> http.client.HTTPResponse | None:
    """A GET on a new connection (body read), or None when nothing answers. With
    `proxy_header`, the connection opens with a PROXY v1 line (balancers that require one);
    with `tls`, it speaks TLS."""
    answer = _get(host, port, path, timeout, proxy_header, tls)
    return answer[0] if answer else None


def http_json(host: str, port: int, path: str, timeout: float = 1.0) -> Any:
    """The JSON body of a GET answered 200 on a new connection, or None."""
    answer = _get(host, port, path, timeout, proxy_header=False)
    if answer is None or answer[0].status != 200:
        return None
    try:
        return json.loads(answer[1])
    except ValueError:
        return None


def http_status(host: str, port: int, path: str = "/", timeout: float = 1.0) -> int | None:
    """Status of a GET, or None when nothing answers."""
    resp = http_get(host, port, path, timeout)
    return resp.status if resp else None


def child_pids(pid: int) -> set[int]:
    """Direct children of `pid`, read from /proc."""
    out: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; the fields after its ')' are fixed.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.add(int(entry.name))
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
