"""Stickler's own History (the JSONL every driver writes) as a trace: a load run or a suite
run becomes replayable traffic. Times are the History's `t` (seconds since the run began)
on top of the file's modification time; fault records are skipped and counted. The
History keeps no request bodies (the drivers' POST bodies carry no meaning), so none are
replayed.

The session key is the History's own session unless --session-key says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from harness.errors import InputError
from harness.history import from_dict
from harness.trace.format import TraceRecord
from harness.trace.importers.base import (
    ImportOptions,
    ImportStats,
    Malformed,
    ParsedRequest,
    RecordBuilder,
    open_input,
)


def _parsed(data: dict, base: float) -> ParsedRequest:
    try:
        record = from_dict(data)
    except (TypeError, ValueError) as exc:
        raise Malformed(f"not a History record: {exc}") from None
    if record.type != "request":
        raise LookupError(record.type)
    return ParsedRequest(
        time=base + float(record.t), method=record.method, path=record.path,
        client_ip=record.client_ip, headers={k.lower(): v for k, v in
                                             record.headers_sent.items()},
        cookies=dict(record.cookies_sent), status=record.status, replica=record.replica,
        set_cookies=list(record.set_cookies))


def import_history(source: str | Path, options: ImportOptions,
                   stats: ImportStats) -> Iterator[TraceRecord]:
    builder = RecordBuilder(options.session_key)
    base = Path(source).stat().st_mtime if Path(source).exists() else 0.0
    with open_input(source) as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            stats.units += 1
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise Malformed("expected a JSON object per line")
                parsed = _parsed(data, base)
            except LookupError as exc:
                stats.skip(number, f"a {exc.args[0]} record, not a request")
                continue
            except (ValueError, Malformed) as exc:
                message = (f"invalid JSON: {exc.msg}" if isinstance(exc, json.JSONDecodeError)
                           else str(exc))
                if not options.skip_bad:
                    raise InputError(f"{message} (use --skip-bad to skip such lines)",
                                     file=str(source), line=number) from None
                stats.skip(number, message)
                continue
            parsed.line = number
            stats.records += 1
            record = builder.build(parsed)
            if options.session_key.kind == "auto":
                record.session = f"history:{data.get('session')}"
            yield record
