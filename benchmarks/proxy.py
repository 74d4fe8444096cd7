"""The reference proxy against HAProxy, both in front of the same kind of replicas, in one run.

    .venv/bin/python benchmarks/proxy.py [--seconds 10] [--connections 32] [--rounds 3]

For each balancer (HAProxy round robin, the reference proxy least-loaded) it starts a
three-replica cluster and runs wrk (keep-alive, GET /cart) against the balancer and against
one replica directly. It prints requests/s, the ratio of the proxy to HAProxy, and the
latency each balancer adds over the direct connection (p50, p99). The balancers take turns
for `--rounds` rounds and the median of each is reported, so that noise from other work on
the machine falls on both. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.runtime import ProcessCluster  # noqa: E402
from harness.topology import parse_topology  # noqa: E402

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          f"{url}/cart"], capture_output=True, text=True, check=True).stdout

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * UNITS[unit]

    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": latency("50"), "p99": latency("99")}


def measure(kind: str, mode: str, seconds: int, connections: int) -> tuple[dict, dict]:
    topology = parse_topology(f"name: bench-{kind}\nbalancer: {{kind: {kind}, mode: {mode}}}\n"
                              "replicas: 3\n")
    with ProcessCluster(topology) as cluster:
        through = wrk(cluster.url, seconds, connections)
        direct = wrk(f"http://{cluster.layout.replicas['r1'].address}", seconds, connections)
    return through, direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[tuple[dict, dict]]] = {"haproxy": [], "reference": []}
    for _ in range(args.rounds):
        for name, kind, mode in (("haproxy", "haproxy", "roundrobin"),
                                 ("reference", "reference", "least-loaded")):
            runs[name].append(measure(kind, mode, args.seconds, args.connections))
    results = {name: tuple({key: statistics.median(run[i][key] for run in rounds)
                            for key in ("rps", "p50", "p99")} for i in (0, 1))
               for name, rounds in runs.items()}
    print(f"wrk -t2 -c{args.connections} -d{args.seconds}s, 3 replicas, "
          f"median of {args.rounds} rounds")
    for name, (through, direct) in results.items():
        print(f"{name:10s} {through['rps']:8.0f} req/s  p50 {through['p50']:6.2f} ms "
              f"p99 {through['p99']:7.2f} ms | direct to one replica {direct['rps']:7.0f} req/s "
              f"p50 {direct['p50']:5.2f} ms | added p50 {through['p50'] - direct['p50']:+.2f} ms "
              f"p99 {through['p99'] - direct['p99']:+.2f} ms")
    ratio = results["reference"][0]["rps"] / results["haproxy"][0]["rps"]
    per_round = [r[0]["rps"] / h[0]["rps"] for r, h in zip(runs["reference"], runs["haproxy"],
                                                            strict=True)]
    print(f"reference / haproxy requests/s: {ratio:.3f} (goal: at least 0.5); per round: "
          + ", ".join(f"{x:.2f}" for x in per_round))


if __name__ == "__main__":
    main()
