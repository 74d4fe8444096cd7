"""Record a HAR with a real browser: Debian's Chromium, headless, driven by Playwright,
shopping on the fixture app through a balancer started by the harness.

    apt-get install chromium; pip install playwright   (neither is a project dependency)
    python -m tests.record_har [OUT.har]

Playwright is only the driver: it starts /usr/bin/chromium (no browser download) and
writes the HAR (`record_har_path`). Each of 3 shoppers has its own cookie jar (cleared
between shoppers) and its own X-Forwarded-For client label: it opens /, adds items with
fetch() POSTs (an `api_key` parameter for redaction), and reads its cart. The result is
committed as fixtures/traces/samples/chromium-haproxy.har (see the README there).
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from harness.runtime import ProcessCluster
from harness.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "fixtures/topologies/haproxy-cookie-insert.yaml"
CHROMIUM = "/usr/bin/chromium"


def record(out: Path, shoppers: int = 3) -> None:
    with ProcessCluster(load_topology(TOPOLOGY)) as cluster, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])  # root in a container
        try:
            context = browser.new_context(record_har_path=str(out), record_har_content="embed")
            for n in range(shoppers):
                if n:  # one context per shopper would write one HAR each; clear the jar
                    context.clear_cookies()
                page = context.new_page()
                # The shopper's client label, as a CDN would pass it on.
                page.set_extra_http_headers({"X-Forwarded-For": f"198.51.100.{20 + n}"})
                page.goto(f"{cluster.url}/")
                for item in ("tea", "cake"):
                    page.evaluate("url => fetch(url, {method: 'POST'})",
                                  f"{cluster.url}/cart?item={item}&api_key=k-{n}")
                page.goto(f"{cluster.url}/cart")
                page.close()
            context.close()  # writes the HAR
        finally:
            browser.close()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else
                  ROOT / "fixtures/traces/samples/chromium-haproxy.har")
    record(target)
    print(f"{target}: {target.stat().st_size} bytes")
