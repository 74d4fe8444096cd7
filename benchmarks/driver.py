"""How fast the scripted driver is, as a ratio to wrk on the same balancer in the same run.

    .venv/bin/python benchmarks/driver.py [--topology FILE] [--seconds 5] [--connections 8]

Starts the topology as local processes, then measures, one after the other:
  1. wrk (keep-alive, GET /cart) through the balancer: the reference;
  2. the scripted driver (a cookie jar per session, one History record per request), with
     a keep-alive connection per session and with a new connection per request.
Prints requests/s of each and the ratios. Nothing here is asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.runtime import ProcessCluster  # noqa: E402
from harness.topology import load_topology  # noqa: E402
from harness.traffic import plans  # noqa: E402
from harness.traffic.scripted import Driver  # noqa: E402


def wrk_rps(url: str, seconds: int, connections: int) -> float:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is not installed: apt-get install wrk")
    out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{seconds}s", f"{url}/cart"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def driver_rps(url: str, seconds: int, connections: int, connection: str) -> float:
    rng = random.Random(1)
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        batch = plans.sessions(rng, connections * 4, 25, connection=connection)
        sent += len(Driver(url, scenario="bench", concurrency=connections).run(batch))
    return sent / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", default=str(ROOT / "fixtures/topologies/"
                                                       "haproxy-cookie-insert.yaml"))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    topology = load_topology(args.topology)
    with ProcessCluster(topology) as cluster:
        ref = wrk_rps(cluster.url, args.seconds, args.connections)
        keep = driver_rps(cluster.url, args.seconds, args.connections, "keepalive")
        new = driver_rps(cluster.url, args.seconds, args.connections, "new")
        versions = cluster.versions()
    print(f"topology {topology.name}, {versions}")
    print(f"wrk (reference)              {ref:10.0f} req/s")
    print(f"driver, keep-alive sessions  {keep:10.0f} req/s  ratio {keep / ref:.3f}")
    print(f"driver, new connections      {new:10.0f} req/s  ratio {new / ref:.3f}")


if __name__ == "__main__":
    main()
