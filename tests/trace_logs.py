"""Real balancer access logs for the importer tests: start a topology with the processes
runtime, send a few cookie-carrying sessions (with X-Forwarded-For client labels), one
unparseable request, and (HAProxy) kill a replica so the log holds its own DOWN message.

`python -m tests.trace_logs DIR` rewrites the committed samples in
fixtures/traces/samples/ (see the README there).
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import requests

from harness.runtime import ProcessCluster
from harness.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGIES = {"haproxy": ROOT / "fixtures/topologies/haproxy-cookie-insert.yaml",
              "nginx": ROOT / "fixtures/topologies/nginx-cookie-hash.yaml"}
SESSIONS = 4
REQUESTS_PER_SESSION = 3


def _garbage(url: str) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        sock.recv(4096)


def _access_log(cluster: ProcessCluster, kind: str) -> str:
    if kind == "nginx":
        return (cluster.workdir / "nginx-access.log").read_text(errors="replace")
    return cluster.logs("balancer")


def record_log(kind: str) -> tuple[str, list[dict]]:
    """The balancer's access log after known traffic, and what was sent: one dict per
    request (session number, method, path, client label, replica that answered)."""
    sent: list[dict] = []
    with ProcessCluster(load_topology(TOPOLOGIES[kind])) as cluster:
        for n in range(SESSIONS):
            client = f"192.0.2.{10 + n}"
            with requests.Session() as http:
                for i in range(REQUESTS_PER_SESSION):
                    method, path = ("POST", f"/cart?item=tea{i}&token=s3cret-{n}") if i % 2 \
                        == 0 else ("GET", "/cart")
                    resp = http.request(method, cluster.url + path,
                                        headers={"X-Forwarded-For": client,
                                                 "Authorization": "Bearer not-logged"},
                                        timeout=10)
                    sent.append({"session": n, "method": method, "path": path,
                                 "client": client, "replica": resp.headers.get("X-Replica"),
                                 "status": resp.status_code})
        _garbage(cluster.url)
        if kind == "haproxy":
            cluster.kill(cluster.replica_ids[0])
            deadline = time.monotonic() + 10
            while "is DOWN" not in cluster.logs("balancer") and time.monotonic() < deadline:
                time.sleep(0.1)
        time.sleep(0.3)  # NGINX writes its access log line after the response
        return _access_log(cluster, kind), sent


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "fixtures/traces/samples")
    out.mkdir(parents=True, exist_ok=True)
    for kind in TOPOLOGIES:
        log, _ = record_log(kind)
        (out / f"{kind}-access.log").write_text(log)
        print(f"{out / f'{kind}-access.log'}: {len(log.splitlines())} lines")
