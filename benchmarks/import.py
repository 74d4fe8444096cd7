"""Import speed of the trace importers on ~100 MB generated logs, in MB/s, as a ratio to
reading the same file in the same run.

    .venv/bin/python benchmarks/import.py [--mb 100] [--seed 1] [--formats haproxy,nginx,har]

For each format it writes a log of about --mb megabytes in a temp directory (lines shaped
like the harness's own logs in fixtures/traces/samples/, seeded: sessions of 1-20 requests,
client labels from 198.51.100.0/24 and 203.0.113.0/24), then times:
- `wc -l` on it, and plain line iteration in Python (`for line in file`), the references;
- the format's parser alone: the line parser for logs, ijson's C backend yielding the HAR
  entries for HAR (no records, session keys, redaction or writing);
- the full import into a trace file (parse, session keys and linking, redaction, JSON
  writing, temp file and rename), as `stickler trace import` does it.
It prints MB/s, and the importer's speed as a ratio to Python line iteration and to the
parser alone (what the rest of the pipeline costs). Nothing is asserted. The
temp directory is removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.trace.importers import ImportOptions, import_to_file  # noqa: E402

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
PATHS = [("GET", "/cart"), ("POST", "/cart?item=tea&token=t0ps3cret"), ("GET", "/"),
         ("GET", "/static/app.js"), ("POST", "/checkout")]


def sessions(rng: random.Random):
    """(time, client, sid, replica, method, path, request number in session) forever."""
    now, n = 1795600000.0, 0
    while True:
        n += 1
        client = f"{rng.choice(['198.51.100', '203.0.113'])}.{rng.randrange(1, 255)}"
        sid, replica = f"{rng.getrandbits(64):016x}", f"r{rng.randrange(1, 4)}"
        for i in range(rng.randrange(1, 21)):
            now += rng.expovariate(200.0)
            method, path = rng.choice(PATHS)
            yield now, client, sid, replica, method, path, i


def haproxy_line(now, client, sid, replica, method, path, i) -> str:
    t = time.gmtime(now)
    stamp = (f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:"
             f"{t.tm_min:02d}:{t.tm_sec:02d}.{int(now % 1 * 1000):03d}")
    cookie = f"sid={sid}; SRVID={replica}" if i else ""
    return (f"{client}:{40000 + i} [{stamp}] fe_main be_app/{replica} 0/0/0/1/1 200 411 - - "
            f"--VN 1/1/0/0/0 0/0 {{{cookie}}} \"{method} {path} HTTP/1.1\"\n")


def nginx_line(now, client, sid, replica, method, path, i) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
    cookie = f"sid={sid}" if i else "-"
    return (f"127.0.0.1 - [{stamp}] \"{method} {path} HTTP/1.1\" 200 "
            f"upstream=127.0.0.{replica[1]}:8080 cookie=\"{cookie}\" xff=\"{client}\"\n")


def har_entry(now, client, sid, replica, method, path, i) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    headers = [{"name": "User-Agent", "value": "Mozilla/5.0 (X11; Linux x86_64) Chromium"},
               {"name": "X-Forwarded-For", "value": client}]
    if i:
        headers.append({"name": "Cookie", "value": f"sid={sid}"})
    return json.dumps({"startedDateTime": stamp, "time": 1.2, "request": {
        "method": method, "url": f"http://127.0.0.1:8080{path}", "httpVersion": "HTTP/1.1",
        "headers": headers, "cookies": [], "queryString": [], "headersSize": -1,
        "bodySize": 0}, "response": {"status": 200, "statusText": "OK", "headers": [
            {"name": "X-Replica", "value": replica},
            {"name": "Set-Cookie", "value": f"sid={sid}; Path=/; HttpOnly"}],
        "cookies": [], "content": {"size": 0, "mimeType": "text/plain"}, "redirectURL": "",
        "headersSize": -1, "bodySize": 0}, "cache": {}, "timings": {"send": 0, "wait": 1,
                                                                    "receive": 0}})


def generate(fmt: str, path: Path, size: int, seed: int) -> int:
    rng, written, count = random.Random(seed), 0, 0
    make = {"haproxy": haproxy_line, "nginx": nginx_line, "har": har_entry}[fmt]
    with path.open("w") as f:
        if fmt == "har":
            f.write('{"log": {"version": "1.2", "creator": {"name": "bench", "version": "1"},'
                    ' "entries": [\n')
        for request in sessions(rng):
            text = make(*request)
            if fmt == "har":
                text = ("" if count == 0 else ",\n") + text
            f.write(text)
            written += len(text)
            count += 1
            if written >= size:
                break
        if fmt == "har":
            f.write("\n]}}\n")
    return count


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def python_lines(path: Path) -> None:
    with path.open("rb") as f:
        for _ in f:
            pass


def parse_only(fmt: str, path: Path) -> None:
    """The format's line parser alone: no records, session keys, redaction or writing."""
    from harness.trace.importers.base import Malformed, Skip
    from harness.trace.importers.haproxy import HAProxyLineParser
    from harness.trace.importers.nginx import NginxLineParser

    parse = HAProxyLineParser() if fmt == "haproxy" else NginxLineParser()
    with path.open("rb") as f:
        for line in f:
            with contextlib.suppress(Skip, Malformed):
                parse(line.decode("utf-8", "replace").rstrip("\r\n"))


def ijson_entries(path: Path) -> None:
    import ijson

    with path.open("rb") as f:
        for _ in ijson.items(f, "log.entries.item", use_float=True):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--formats", default="haproxy,nginx,har")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stickler-bench-import-"))
    print(f"seed {args.seed}, {args.mb:g} MB per format, in {work}")
    print(f"{'format':8} {'requests':>9} {'MB':>6} {'wc -l':>9} {'py lines':>9} "
          f"{'parser':>9} {'import':>9} {'import/py lines':>16} {'import/parser':>14}"
          "  (MB/s, ratios of speeds)")
    try:
        for fmt in args.formats.split(","):
            log = work / f"{fmt}.log"
            requests = generate(fmt, log, int(args.mb * 1e6), args.seed)
            mb = log.stat().st_size / 1e6
            python_lines(log)  # the first read warms the page cache for every reader
            wc = timed(lambda log=log: subprocess.run(["wc", "-l", str(log)], check=True,
                                                      capture_output=True))
            lines = timed(lambda log=log: python_lines(log))
            raw = timed(lambda log=log: ijson_entries(log)) if fmt == "har" else \
                timed(lambda fmt=fmt, log=log: parse_only(fmt, log))
            out = work / f"{fmt}.jsonl"
            imported = timed(lambda fmt=fmt, log=log, out=out: import_to_file(
                fmt, log, out, ImportOptions()))
            out.unlink()
            print(f"{fmt:8} {requests:>9} {mb:>6.0f} {mb / wc:>9.0f} {mb / lines:>9.0f} "
                  f"{mb / raw:>9.1f} {mb / imported:>9.1f} "
                  f"{lines / imported:>16.4f} {raw / imported:>14.2f}")
            log.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
