"""The replayer's speed and its schedule accuracy, against wrk on the same cluster.

    .venv/bin/python benchmarks/replay.py [--seconds 10] [--rate 500] [--concurrency 32]

1. Throughput: wrk (keep-alive, GET /cart, `--concurrency` connections) through HAProxy
   cookie insert, then `stickler replay` of fixtures/traces/shopping-day.jsonl at full speed
   with the same concurrency through the same cluster; the replay's requests/s as a ratio
   to wrk's.
2. Schedule accuracy at 1x: a generated trace of `--rate` requests/s for `--seconds`
   (sessions of 5 requests one second apart, starts spread evenly), replayed in real time;
   the lag of each request behind its due time, p50 and p99, and the rate achieved.
Import speed is benchmarks/import.py. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
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
from harness.trace.format import TraceRecord  # noqa: E402
from harness.trace.io import read_trace  # noqa: E402
from harness.trace.replay import Replayer  # noqa: E402
from harness.trace.schedule import LagStats  # noqa: E402


def wrk(url: str, seconds: int, connections: int) -> float:
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"{url}/cart"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def paced_trace(rate: int, seconds: int) -> list[TraceRecord]:
    """`rate` requests/s: sessions of 5 requests 1 s apart, a new session every 5/rate s."""
    per_session, records = 5, []
    for i in range(rate * seconds // per_session):
        start = i * per_session / rate
        for seq in range(per_session):
            records.append(TraceRecord(t=start + seq, session=f"s{i}", seq=seq,
                                       method="GET", path="/cart",
                                       client_ip=f"198.51.{i % 200}.{1 + i % 250}",
                                       cookies_sent={"sid": "x"} if seq else {}))
    return sorted(records, key=lambda r: r.t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with read_trace(ROOT / "fixtures" / "traces" / "shopping-day.jsonl") as reader:
        shopping = list(reader)
    topology = load_topology(ROOT / "fixtures" / "topologies" / "haproxy-cookie-insert.yaml")
    with ProcessCluster(topology) as cluster:
        wrk_rps = wrk(cluster.url, args.seconds, args.concurrency)
        fast = Replayer(cluster.url, speed=math.inf, concurrency=args.concurrency).run(shopping)
        replay_rps = len(fast.records) / fast.duration
        paced = paced_trace(args.rate, args.seconds)
        started = time.monotonic()
        real = Replayer(cluster.url, speed=1.0, concurrency=args.concurrency).run(paced)
        elapsed = time.monotonic() - started
    lag = LagStats(real.lags)
    print(f"HAProxy cookie insert, 3 replicas, {args.concurrency} connections")
    print(f"wrk                        {wrk_rps:8.0f} req/s")
    print(f"replay at max speed        {replay_rps:8.0f} req/s ({len(fast.records)} requests of "
          f"shopping-day.jsonl): {replay_rps / wrk_rps:.3f} of wrk")
    span = paced[-1].t - paced[0].t
    print(f"replay at 1x, {args.rate} req/s ({len(paced)} requests over {span:.1f} s): took "
          f"{elapsed:.1f} s, lag p50 {lag.percentile(50) * 1000:.1f} "
          f"ms, p99 {lag.percentile(99) * 1000:.1f} ms, max {max(real.lags) * 1000:.1f} ms; "
          f"errors {sum(1 for r in real.records if r.error)}")


if __name__ == "__main__":
    main()
