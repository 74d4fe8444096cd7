"""How fast our recording Locust users are, against wrk and stock Locust, in one run.

    .venv/bin/python benchmarks/load.py [--topology FILE] [--users 50] [--seconds 10]
                                         [--processes 1]

On one cluster (default: HAProxy cookie insert), one after the other:
  1. wrk -t2 -c<users> GET /cart: the reference;
  2. stock Locust FastHttpUser, GET /cart, no think time, no recording: a second reference;
  3. Stickler's Shopper (cookie jar, source-address binding, one History record per
     request), no think time.
Prints requests/s and the ratios. Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.runtime import ProcessCluster  # noqa: E402
from harness.topology import load_topology  # noqa: E402
from harness.traffic.load import run_load  # noqa: E402
from harness.traffic.profile import parse_profile  # noqa: E402

STOCK = textwrap.dedent("""
    from locust import FastHttpUser, constant, task

    class Stock(FastHttpUser):
        wait_time = constant(0)

        @task
        def cart(self):
            self.client.get("/cart")
""")


def wrk_rps(url: str, users: int, seconds: int) -> float:
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    out = subprocess.run(["wrk", "-t2", f"-c{users}", f"-d{seconds}s", f"{url}/cart"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def stock_rps(url: str, users: int, seconds: int, processes: int, work: Path) -> float:
    locustfile = work / "stock.py"
    locustfile.write_text(STOCK)
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--host", url, "--headless",
           "--only-summary", "-u", str(users), "-r", str(users), "--run-time", f"{seconds}s",
           "--json-file", str(work / "stock")]
    if processes > 1:
        cmd += ["--processes", str(processes), "--master-bind-host", "127.0.0.1"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          timeout=seconds + 60)
    if not (work / "stock.json").exists():
        sys.exit(f"stock Locust failed:\n{done.stderr[-2000:]}")
    entries = json.loads((work / "stock.json").read_text())
    requests = sum(e["num_requests"] for e in entries)
    span = (max(e["last_request_timestamp"] for e in entries)
            - min(e["start_time"] for e in entries))
    return requests / span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", default=str(ROOT / "fixtures/topologies/"
                                                       "haproxy-cookie-insert.yaml"))
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    topology = load_topology(args.topology)
    profile = parse_profile(f"name: bench\nusers: {args.users}\nspawn_rate: {args.users}\n"
                            "session_length: {min: 20, alpha: 1.5, max: 200}\n"
                            "think_time_ms: {min: 0, max: 0}\n")
    with ProcessCluster(topology) as cluster, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ref = wrk_rps(cluster.url, args.users, args.seconds)
        stock = stock_rps(cluster.url, args.users, args.seconds, args.processes, work)
        ours = run_load(cluster, profile, duration=args.seconds, seed=1, workdir=work / "ours",
                        processes=args.processes).stats["rps"]
    print(f"topology {topology.name}, {args.users} users, {args.seconds} s, "
          f"{args.processes} Locust process(es)")
    print(f"wrk                          {ref:9.0f} req/s")
    print(f"stock Locust FastHttpUser    {stock:9.0f} req/s  ratio to wrk {stock / ref:.3f}")
    print(f"Stickler Shopper, recording  {ours:9.0f} req/s  ratio to wrk {ours / ref:.3f}, "
          f"to stock Locust {ours / stock:.3f}")


if __name__ == "__main__":
    main()
