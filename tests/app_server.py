"""A fixture app replica served on loopback from a background thread, for tests that talk
HTTP to the app itself (the suites start replicas as processes)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from harness.app.server import App, start_server
from harness.runtime.net import free_port


@contextlib.contextmanager
def serving(app: App, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL."""
    port = free_port(host)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(start_server(app, host, port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.run_until_complete(app.store.close())
        loop.close()
