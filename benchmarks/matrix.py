"""How much faster a concurrent conformance run is than a serial one, in the same run.

    .venv/bin/python benchmarks/matrix.py [--full] [--suite NAME] [--balancer KIND]
                                          [--runtime processes|containers] [--seed N]
                                          [--jobs N]

Runs the same checks twice with the same seed: `stickler conformance --jobs 1` (the
reference: one check after another, in order) and with the default (or `--jobs N`) number of
jobs. Prints both walls, the CPU the run used (children included), the ratio, and whether the
verdicts agree. Without `--full` the subset is the stickiness and dynamic_routing suites
(about 150 checks, a few minutes serially); `--full` is the whole matrix (about 13 minutes
serially on 2 cores). Nothing here is asserted: machines are noisy; the ratio is the figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STICKLER = Path(sys.executable).parent / "stickler"
SUBSET = ["--suite", "stickiness", "--suite", "dynamic_routing"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], report_dir: Path) -> dict:
    cmd = [str(STICKLER), "conformance", *args, "--report-dir", str(report_dir)]
    print("$", " ".join(cmd), flush=True)
    cpu0, start = children_cpu(), time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall, cpu = time.monotonic() - start, children_cpu() - cpu0
    report_path = report_dir / "report.json"
    if not report_path.exists():
        sys.exit(f"no report from {' '.join(cmd)} (exit {proc.returncode}):\n{proc.stderr}")
    report = json.loads(report_path.read_text())
    verdicts = {f"{c['topology']}:{c['id']}": c["verdict"] for c in report["checks"]}
    return {"wall": wall, "cpu": cpu, "code": proc.returncode, "verdicts": verdicts,
            "jobs": (report.get("schedule") or {}).get("jobs", 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the whole matrix")
    parser.add_argument("--suite", action="append", default=[])
    parser.add_argument("--balancer", action="append", default=[])
    parser.add_argument("--runtime", default="processes", choices=["processes", "containers"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", help="the concurrent run's jobs (default: auto)")
    args = parser.parse_args()
    common = ["--runtime", args.runtime, "--seed", str(args.seed)]
    common += [a for s in args.suite for a in ("--suite", s)]
    common += [a for b in args.balancer for a in ("--balancer", b)]
    if not args.full and not args.suite:
        common += SUBSET
    with tempfile.TemporaryDirectory(prefix="stickler-bench-matrix-") as tmp:
        serial = run([*common, "--jobs", "1"], Path(tmp) / "serial")
        concurrent = run([*common, *(["--jobs", args.jobs] if args.jobs else [])],
                         Path(tmp) / "concurrent")
    differ = sorted(k for k in serial["verdicts"].keys() | concurrent["verdicts"].keys()
                    if serial["verdicts"].get(k) != concurrent["verdicts"].get(k))
    checks = len(serial["verdicts"])
    print(f"\n{checks} checks, runtime {args.runtime}, seed {args.seed}")
    for name, r in (("serial (--jobs 1)", serial), (f"concurrent (jobs {concurrent['jobs']})",
                                                   concurrent)):
        print(f"  {name:<24} wall {r['wall']:7.1f} s   cpu {r['cpu']:7.1f} s   "
              f"exit {r['code']}")
    print(f"  ratio serial/concurrent  {serial['wall'] / concurrent['wall']:.2f}x")
    if differ:
        print(f"  verdicts differ on {len(differ)} checks:")
        for key in differ:
            print(f"    {key}: {serial['verdicts'].get(key)} vs "
                  f"{concurrent['verdicts'].get(key)}")
    else:
        print("  verdicts: the same on every check")


if __name__ == "__main__":
    main()
