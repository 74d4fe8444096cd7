"""`stickler trace`: import a HAR file or a balancer log as a trace, and check a trace."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from pathlib import Path

from harness import argtypes
from harness.errors import InputError

FORMAT_OPTIONS = {"log_format": ("nginx", "haproxy"), "capture": ("haproxy",),
                  "utc_offset": ("haproxy",), "client_ip": ("har",)}


def add_parser(sub: argparse._SubParsersAction) -> None:
    trace = sub.add_parser("trace", help="import recorded traffic as a trace; check a trace")
    actions = trace.add_subparsers(dest="trace_command", required=True)

    imp = actions.add_parser("import", help="turn a HAR file or an access log into a trace",
                             description="See docs/trace.md for the formats and options.")
    imp.add_argument("format", choices=["har", "haproxy", "nginx", "history"],
                     help="what FILE is: a HAR export, an HAProxy or NGINX access log, or a "
                          "Stickler history.jsonl")
    imp.add_argument("file", metavar="FILE", help="the file to import (- for standard input)")
    imp.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                     help="the trace to write (- for standard output)")
    imp.add_argument("--force", action="store_true", help="replace OUT.jsonl if it exists")
    imp.add_argument("--session-key", default="auto", metavar="RULE",
                     help="auto (default), ip, cookie:NAME or header:NAME")
    imp.add_argument("--link-window", type=argtypes.window, default=30.0, metavar="SECONDS",
                     help="join a cookie-less first request to the session its client "
                          "starts within this time (default 30; 0: off)")
    imp.add_argument("--skip-bad", action="store_true",
                     help="skip (and count) malformed lines instead of stopping")
    imp.add_argument("--no-redact", action="store_true",
                     help="keep secrets (Authorization, cookie values, token parameters)")
    imp.add_argument("--keep-cookie", action="append", default=[], metavar="NAME",
                     help="an affinity cookie whose value is kept (repeatable; SRVID, "
                          "SERVERID and stickler-affinity always are)")
    imp.add_argument("--secret-names", default=None, metavar="REGEX",
                     help="query/form parameters and headers to redact (default: "
                          "token|key|password|passwd|secret)")
    imp.add_argument("--log-format", default=None, metavar="FORMAT",
                     help="nginx: the log_format string, or 'stickler' (default) or "
                          "'combined'; haproxy: the log-format string, or 'httplog' "
                          "(default) or 'httpslog'")
    imp.add_argument("--capture", default=None, metavar="HEADERS",
                     help="haproxy: the captured request headers in order, comma-separated "
                          "(default: Cookie, as the harness's config captures)")
    imp.add_argument("--utc-offset", type=argtypes.utc_offset, default=None, metavar="HOURS",
                     help="haproxy: the zone of the log's local times, in hours east of "
                          "UTC (-8, 5.5, --utc-offset=-08:00; default 0)")
    imp.add_argument("--client-address", dest="client_ip", default=None, metavar="ADDRESS",
                     help="har: the client address when no X-Forwarded-For says it")
    # The old spelling: `--client-ip` names a transport mode elsewhere (record, topologies).
    imp.add_argument("--client-ip", dest="client_ip", help=argparse.SUPPRESS)
    imp.set_defaults(func=cmd_import)

    check = actions.add_parser("check", help="validate a trace against its schema and "
                                             "summarize it")
    check.add_argument("file", metavar="FILE", help="a trace (- for standard input)")
    check.set_defaults(func=cmd_check)


def _format_options(args: argparse.Namespace) -> dict:
    options = {}
    for name, formats in FORMAT_OPTIONS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if args.format not in formats:
            raise InputError(f"only for {' and '.join(formats)}, not {args.format}",
                             key="--" + name.replace("_", "-"))
        options[name] = value
    if "capture" in options:
        options["request_headers"] = tuple(
            h.strip() for h in options.pop("capture").split(",") if h.strip())
    if "utc_offset" in options:
        options["utc_offset"] = options["utc_offset"] * 3600
    if "log_format" in options:  # checked before anything is read
        if args.format == "nginx":
            from harness.trace.importers.nginx import NginxLineParser

            NginxLineParser(options["log_format"])
        else:
            from harness.trace.importers.haproxy_format import compile_log_format

            compile_log_format(options["log_format"])
    return options


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the trace writer removes its temp file."""
    def raise_exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, raise_exit)


def cmd_import(args: argparse.Namespace) -> int:
    # Every input is checked before anything is read or written.
    from harness.outputs import check_output
    from harness.trace.importers import ImportOptions, import_to_file
    from harness.trace.redact import DEFAULT_KEEP_COOKIES, DEFAULT_SECRET_NAMES, RedactionPolicy
    from harness.trace.session_key import parse_rule

    source = Path(args.file)  # "-": standard input
    if args.file != "-":
        if source.is_dir():
            raise InputError("is a directory; expected a file", file=args.file)
        if not source.is_file():
            raise InputError("no such file", file=args.file)
    out = Path("-") if args.output == "-" else \
        check_output(args.output, "--output", force=args.force, inputs=[source])
    secret_names = args.secret_names or DEFAULT_SECRET_NAMES
    try:
        re.compile(secret_names)
    except re.error as exc:
        raise InputError(f"not a regular expression: {exc}", key="--secret-names") from None
    options = ImportOptions(session_key=parse_rule(args.session_key), skip_bad=args.skip_bad,
                            link_window=args.link_window)
    policy = None if args.no_redact else RedactionPolicy(
        keep_cookies=frozenset((*DEFAULT_KEEP_COOKIES, *args.keep_cookie)),
        secret_names=secret_names)
    _exit_on_sigterm()
    header, stats = import_to_file(args.format, source, out, options, policy,
                                   require_records=True, **_format_options(args))
    if not stats.records:
        reasons = "; ".join(f"{source}{f':{ln}' if ln else ''}: {why}"
                            for ln, why in stats.examples[:3])
        raise InputError(f"no requests imported ({stats.units} "
                         f"{'entries' if args.format == 'har' else 'lines'}, "
                         f"{stats.skipped} skipped{': ' + reasons if reasons else ''}); "
                         f"nothing written", file=str(source))
    said = sys.stderr if str(out) == "-" else sys.stdout  # stdout may be the trace
    print(f"{'<stdout>' if str(out) == '-' else out}: {stats.records} requests from "
          f"{stats.units} {'entries' if args.format == 'har' else 'lines'} of {source}, "
          f"{stats.skipped} skipped, {'redacted' if header.redacted else 'NOT redacted'}",
          file=said)
    for line, reason in stats.examples:
        print(f"  skipped {source}{f':{line}' if line else ''}: {reason}", file=said)
    if stats.skipped > len(stats.examples):
        print(f"  ... and {stats.skipped - len(stats.examples)} more", file=said)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from harness.trace.check import summarize

    summary = summarize(args.file)
    if not summary["requests"]:
        # Valid, but nothing to replay: an import that skipped every line makes one.
        print(f"{args.file}: no requests (a header only); nothing to replay",
              file=sys.stderr)
        return 1
    print(f"{args.file}: ok (stickler-trace v{summary['version']}, "
          f"{'redacted' if summary['redacted'] else 'not redacted'}, "
          f"from {summary['source'] or 'unknown'})")
    for key in ("requests", "sessions", "clients", "replicas"):
        print(f"  {key:<9} {summary[key]}")
    print(f"  span      {summary['span_s']:.3f} s ({summary['first_t']:g} .. "
          f"{summary['last_t']:g}), {summary['out_of_order']} requests earlier than "
          f"the one before")
    return 0
