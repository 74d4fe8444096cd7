"""The load driver's Locust user: shoppers from a Profile's population (see load.py).

Environment (set by harness.traffic.load.run_load):
  STICKLER_POPULATION   JSON file: {"users": [UserSpec, ...]}
  STICKLER_HISTORY_DIR  where each process writes history-<pid>.jsonl
  STICKLER_T0           epoch seconds that record times count from
  STICKLER_WORKERS      Locust worker processes (default: --processes, or 1)

HttpUser, not FastHttpUser: requests lets an HTTPAdapter give its pool a source address
(urllib3's `source_address`); geventhttpclient's pool has no such setting, so binding there
would mean overriding its private socket factory.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import time
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from random import Random
from typing import IO
from urllib.parse import urlsplit

from locust import HttpUser, events, task
from locust.exception import StopUser
from requests.adapters import HTTPAdapter

from harness.history import RequestRecord, to_json
from harness.runtime.net import ensure_loopback
from harness.traffic.cookies import CookieJar
from harness.traffic.observe import observe
from harness.traffic.plans import ITEMS
from harness.traffic.profile import UserSpec, session_length

log = logging.getLogger("stickler.locust")
T0 = float(os.environ.get("STICKLER_T0") or time.time())
NO_COOKIES = DefaultCookiePolicy(allowed_domains=[])  # requests' jar stores nothing; ours does
_user_numbers = itertools.count()  # per process; forked workers each start at 0
_population: list[UserSpec] = []


def population() -> list[UserSpec]:
    if not _population:
        data = json.loads(Path(os.environ["STICKLER_POPULATION"]).read_text())
        _population.extend(UserSpec.from_dict(u) for u in data["users"])
    return _population


def loopback_host(url: str | None) -> bool:
    try:
        ensure_loopback(urlsplit(url or "").hostname or "")
    except ValueError:
        return False
    return True


class Recorder:
    """This process's history file; opened on first use (after Locust forked its workers)."""

    def __init__(self) -> None:
        self.file: IO[str] | None = None

    def write(self, record: RequestRecord) -> None:
        if self.file is None:
            folder = Path(os.environ["STICKLER_HISTORY_DIR"])
            folder.mkdir(parents=True, exist_ok=True)
            self.file = (folder / f"history-{os.getpid()}.jsonl").open(
                "a", encoding="utf-8", buffering=1 << 16)
        self.file.write(to_json(record) + "\n")

    def flush(self, **_: object) -> None:
        if self.file:
            self.file.flush()

    def close(self, **_: object) -> None:
        if self.file:
            self.file.close()
            self.file = None


recorder = Recorder()
events.test_stop.add_listener(recorder.flush)
events.quitting.add_listener(recorder.close)
atexit.register(recorder.close)


@events.init.add_listener
def refuse_other_hosts(environment, **_: object) -> None:
    if environment.host and not loopback_host(environment.host):
        log.error("refusing to send load to %s; only 127.0.0.0/8 is allowed", environment.host)
        raise SystemExit(2)


class SourceAdapter(HTTPAdapter):
    """Binds every connection of its pool to one source address."""

    def __init__(self, source_ip: str):
        self.source_ip = ensure_loopback(source_ip)
        super().__init__()

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


class Shopper(HttpUser):
    """Sessions of POST /cart (add), GET /cart (browse) and a final POST /checkout."""

    def on_start(self) -> None:
        if not loopback_host(self.host):
            log.error("refusing to send load to %s; only 127.0.0.0/8 is allowed", self.host)
            raise StopUser()
        specs = population()
        runner = self.environment.runner
        workers = int(os.environ.get("STICKLER_WORKERS")
                      or getattr(self.environment.parsed_options, "processes", None) or 1)
        number = max(getattr(runner, "worker_index", 0), 0) + workers * next(_user_numbers)
        self.spec = specs[number % len(specs)]
        lap = number // len(specs)  # more Locust users than specs: a spec's second user
        self.user_id = self.spec.id if lap == 0 else f"{self.spec.id}.{lap}"
        self.rng = Random(f"{self.spec.seed}:{lap}")
        self.client.trust_env = False  # no proxy from the environment, ever
        self.client.cookies.set_policy(NO_COOKIES)
        self.address = ""
        self.sent = 0
        self.sessions = 0
        self.left = 0  # requests left in the current session
        self._use_address(self.spec.addresses[0])

    def wait_time(self) -> float:
        low, high = self.spec.think_ms
        return self.rng.uniform(low, high) / 1000

    def _use_address(self, ip: str) -> None:
        """A fresh adapter (and pool): kept-alive connections from the old address close."""
        for old in set(self.client.adapters.values()):
            old.close()
        adapter = SourceAdapter(ip)
        self.client.mount("http://", adapter)
        self.client.mount("https://", adapter)
        self.address = ip

    def _new_session(self) -> None:
        self.session = f"{self.user_id}-s{self.sessions}"
        self.sessions += 1
        self.left = session_length(self.rng, self.spec)
        self.seq = 0
        self.cart = 0
        self.jar = CookieJar()

    def _next_step(self) -> tuple[str, str]:
        if self.seq > 0 and self.left == 1:
            return "POST", "/checkout"
        if self.seq == 0 or self.rng.random() < 0.5:
            return "POST", f"/cart?item={self.rng.choice(ITEMS)}"
        return "GET", "/cart"

    @task
    def shop(self) -> None:
        if self.left <= 0:
            self._new_session()
        spec = self.spec
        if spec.switch_every:
            ip = spec.addresses[(self.sent // spec.switch_every) % len(spec.addresses)]
            if ip != self.address:
                self._use_address(ip)
        method, path = self._next_step()
        sent_headers = {"X-Forwarded-For": spec.xff} if spec.xff else {}
        headers = dict(sent_headers)
        if cookie := self.jar.header():
            headers["Cookie"] = cookie
        expected = 0 if path == "/checkout" else self.cart + (1 if method == "POST" else 0)
        record = RequestRecord(
            t=time.time() - T0, duration=0.0, scenario="load", user=self.user_id,
            session=self.session, seq=self.seq, client_ip=self.address, transport="source",
            connection="keepalive", method=method, path=path,
            cookies_sent=dict(self.jar.cookies), headers_sent=sent_headers,
            cart_expected=expected)
        self.sent += 1
        self.seq += 1
        self.left -= 1
        start = time.perf_counter()
        try:
            resp = self.client.request(method, path, name=path.split("?")[0], headers=headers,
                                       allow_redirects=False)
        except Exception as exc:
            record.duration = time.perf_counter() - start
            record.error = _describe(exc)
            recorder.write(record)
            raise
        # (A request cut off by Locust's stop raises GreenletExit and leaves no record.)
        record.duration = time.perf_counter() - start
        if resp.error is not None:
            record.error = _describe(resp.error)
        else:
            observe(record, resp.status_code, resp.headers.get,
                    resp.raw.headers.getlist("Set-Cookie"), resp.content)
            self.jar.update(record.set_cookies)
            if record.cart_seen is not None:
                self.cart = record.cart_seen  # the user now sees this cart
        if not spec.keep_cookies:
            self.jar.cookies.clear()
        recorder.write(record)


def _describe(exc: BaseException) -> str:
    """The innermost cause, e.g. `ConnectionRefusedError: [Errno 111] ...`."""
    for _ in range(10):
        if exc.__context__ is None:
            break
        exc = exc.__context__
    return f"{type(exc).__name__}: {exc}"
