"""`stickler record`: the reference proxy in recording mode between clients and a balancer;
what went by is written as a trace when it stops (Ctrl-C, SIGTERM or --duration)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from harness import argtypes
from harness.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser("record", help="record traffic to a balancer as a trace (a "
                         "recording proxy in front of it)")
    rec.add_argument("--upstream", required=True, metavar="HOST:PORT",
                     help="the balancer to record traffic to (on 127.0.0.0/8)")
    rec.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                     help="where clients connect instead (default 127.0.0.1:8080)")
    rec.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                     help="the trace to write when the recording ends")
    rec.add_argument("--force", action="store_true", help="replace OUT.jsonl if it exists")
    rec.add_argument("--duration", type=argtypes.seconds, default=None, metavar="SECONDS",
                     help="stop after this long (default: at Ctrl-C or SIGTERM)")
    rec.add_argument("--client-ip", default="peer", choices=["peer", "proxy-protocol", "xff"],
                     help="where the client's address comes from (default: the connection)")
    rec.add_argument("--session-key", default="auto", metavar="RULE",
                     help="auto (default), ip, cookie:NAME or header:NAME")
    rec.add_argument("--no-redact", action="store_true",
                     help="keep secrets (Authorization, cookie values, token parameters)")
    rec.add_argument("--keep-cookie", action="append", default=[], metavar="NAME",
                     help="an affinity cookie whose value is kept (repeatable)")
    rec.set_defaults(func=cmd_record)


def _address(text: str, key: str) -> tuple[str, int]:
    from harness.runtime.net import ensure_loopback

    host, _, port = text.rpartition(":")
    try:
        return ensure_loopback(host), int(port)
    except ValueError:
        raise InputError(f"expected a loopback HOST:PORT (127.0.0.0/8), got {text!r}",
                         key=key) from None


def cmd_record(args: argparse.Namespace) -> int:
    from harness.outputs import check_output
    from harness.proxy.config import ProxyConfig, Upstream
    from harness.proxy.recorder import Recorder
    from harness.proxy.routing import RouterConfig
    from harness.proxy.server import Proxy, serve
    from harness.trace.redact import DEFAULT_KEEP_COOKIES, RedactionPolicy
    from harness.trace.session_key import parse_rule

    upstream = _address(args.upstream, "--upstream")
    listen = _address(args.listen, "--listen")
    out = check_output(args.output, "--output", force=args.force)
    if args.duration is not None and args.duration <= 0:
        raise InputError("expected a positive number of seconds", key="--duration")
    try:
        rule = parse_rule(args.session_key)
    except ValueError as exc:
        raise InputError(str(exc), key="--session-key") from None
    policy = None if args.no_redact else RedactionPolicy(
        keep_cookies=frozenset((*DEFAULT_KEEP_COOKIES, *args.keep_cookie)))
    config = ProxyConfig(host=listen[0], port=listen[1], router=RouterConfig(),
                         replicas=(Upstream("upstream", *upstream),),
                         health={"enabled": False, "interval_ms": 1000, "fall": 1, "rise": 1},
                         client_ip=args.client_ip)
    proxy = Proxy.from_config(config)
    proxy.recorder = Recorder(out, policy=policy, session_key=rule)
    print(f"recording http://{listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]} into "
          f"{out}; stop with Ctrl-C", file=sys.stderr, flush=True)

    async def run() -> None:
        if args.duration is not None:
            asyncio.get_running_loop().call_later(
                args.duration, lambda: signal.raise_signal(signal.SIGTERM))
        await serve(proxy)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    count = proxy.recorder.commit()
    print(f"{out}: {count} requests recorded"
          f"{'' if policy is None else ', redacted'}", file=sys.stderr)
    return 0
