"""Importers: each turns a recorded source into a stream of TraceRecords (with `t` in Unix
time), counting what it skipped. `import_to_file` adds redaction and writes the trace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

from harness.trace.format import TraceHeader, TraceRecord, sendable_problem
from harness.trace.importers.base import ImportOptions, ImportStats
from harness.trace.importers.haproxy import import_haproxy
from harness.trace.importers.har import import_har
from harness.trace.importers.history import import_history
from harness.trace.importers.nginx import import_nginx
from harness.trace.io import TraceWriter
from harness.trace.redact import RedactionPolicy, redact
from harness.trace.sessions import link_first_requests, number_sessions

DEFAULT_POLICY = RedactionPolicy()
Importer = Callable[..., Iterator[TraceRecord]]
IMPORTERS: dict[str, Importer] = {"har": import_har, "haproxy": import_haproxy,
                                  "nginx": import_nginx, "history": import_history}

__all__ = ["IMPORTERS", "ImportOptions", "ImportStats", "import_records", "import_to_file"]


def _sendable(records: Iterator[TraceRecord], stats: ImportStats) -> Iterator[TraceRecord]:
    """Requests that cannot be sent again as recorded (a control character in a header, a
    path not in origin form, a client address that is none) are skipped, saying why: a
    replay could not send them, so a trace never holds them."""
    for record in records:
        problem = sendable_problem(asdict(record))
        if problem:
            stats.records -= 1
            stats.skip(record.source_line, f"cannot be sent as HTTP: {problem}")
            continue
        yield record


def import_records(fmt: str, source: str | Path, options: ImportOptions, stats: ImportStats,
                   policy: RedactionPolicy | None = DEFAULT_POLICY,
                   **format_options) -> Iterator[TraceRecord]:
    """Records in Unix time, linked and numbered by session, redacted by `policy` (None:
    not redacted). Redaction comes last: linking needs the cookie values."""
    records = _sendable(IMPORTERS[fmt](source, options, stats, **format_options), stats)
    if options.session_key.kind in ("auto", "cookie"):
        records = link_first_requests(records, options.link_window)
    for record in number_sessions(records):
        yield redact(record, policy) if policy is not None else record


def import_to_file(fmt: str, source: str | Path, out: str | Path, options: ImportOptions,
                   policy: RedactionPolicy | None = DEFAULT_POLICY,
                   require_records: bool = False,
                   **format_options) -> tuple[TraceHeader, ImportStats]:
    """Import `source` into the trace file `out`: all of it, or (on any error) nothing;
    with `require_records`, nothing either when no request was found (`out` as it was).
    `t` counts from the first record's time."""
    stats = ImportStats()
    records = import_records(fmt, source, options, stats, policy, **format_options)
    first = next(records, None)
    header = TraceHeader(start=first.t if first else 0.0,
                         source={"format": fmt, "file": Path(source).name},
                         redacted=policy is not None, session_key=str(options.session_key))
    if first is None and require_records:
        for _ in records:  # count what was skipped, for the error
            pass
        return header, stats
    with TraceWriter(out, header) as writer:
        if first is not None:
            writer.write(replace(first, t=0.0))
            for record in records:
                record.t = round(record.t - header.start, 6)
                writer.write(record)
    return header, stats
