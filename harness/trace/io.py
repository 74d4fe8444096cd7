"""Reading and writing trace files: a streaming reader with line-numbered errors, and a
writer that leaves either the whole file or nothing (temp file, then rename)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.errors import InputError
from harness.trace.format import (
    TraceHeader,
    TraceRecord,
    header_from_dict,
    header_json,
    record_from_dict,
    record_json,
)


class TraceReader:
    """Iterates the records of a trace; `header` is read on opening. Use as a context
    manager, or iterate to the end (the file closes then)."""

    def __init__(self, path: str | Path, *, validate: bool = False):
        self.path = Path(path)
        self.validate = validate  # also apply the full JSON Schema (slower)
        try:
            # "-": standard input (not closed with the reader)
            self._file = io.BufferedReader(io.FileIO(sys.stdin.fileno(), closefd=False)) \
                if str(path) == "-" else self.path.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from None
        self.line = 0
        try:
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _error(self, message: str) -> InputError:
        return InputError(message, file=str(self.path), line=self.line)

    def _read_header(self) -> TraceHeader:
        for raw in self._file:
            self.line += 1
            if raw.strip():
                try:
                    data = self._decode(raw)
                    self._check_schema(data, header=True)
                    return header_from_dict(data)
                except ValueError as exc:
                    raise self._error(f"not a trace header: {exc}") from None
        raise InputError("empty file; expected a trace header line", file=str(self.path))

    def _check_schema(self, data: object, *, header: bool) -> None:
        if self.validate:
            from harness.trace.schema import schema_errors

            errors = schema_errors(data, header=header)
            if errors:
                raise ValueError("; ".join(errors[:3]))

    def _decode(self, raw: bytes) -> object:
        if not raw.endswith(b"\n"):
            # The last line of a trace cut off mid-write has no newline.
            try:
                return json.loads(raw)
            except ValueError:
                raise self._error("truncated line (no newline at the end of the file, and "
                                  "not complete JSON)") from None
        try:
            return json.loads(raw)
        except UnicodeDecodeError as exc:
            raise self._error(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
        except json.JSONDecodeError as exc:
            raise self._error(f"invalid JSON: {exc.msg} at column {exc.colno}") from None

    def __iter__(self) -> Iterator[TraceRecord]:
        try:
            for raw in self._file:
                self.line += 1
                if not raw.strip():
                    continue
                try:
                    data = self._decode(raw)
                    self._check_schema(data, header=False)
                    yield record_from_dict(data)
                except ValueError as exc:
                    raise self._error(f"not a trace record: {exc}") from None
        finally:
            self._file.close()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trace(path: str | Path, *, validate: bool = False) -> TraceReader:
    return TraceReader(path, validate=validate)


class TraceWriter:
    """Writes a trace to a temp file beside `path`; `commit()` (or leaving the `with` block
    without an exception) renames it into place, anything else removes it."""

    def __init__(self, path: str | Path, header: TraceHeader):
        self.path = Path(path)
        self._tmp = None
        if str(path) == "-":  # standard output: written as it goes, nothing to rename
            self._file = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
            self._file.write(header_json(header) + "\n")
            self.count = 0
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                       suffix=".tmp")
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror}", file=str(self.path)) from None
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "w", encoding="utf-8")
        self._file.write(header_json(header) + "\n")
        self.count = 0

    def write(self, record: TraceRecord) -> None:
        try:
            self._file.write(record_json(record) + "\n")
        except OSError as exc:  # a full disk
            self.abort()
            raise InputError(f"cannot write: {exc.strerror}", file=str(self.path)) from None
        self.count += 1

    def commit(self) -> None:
        if self._tmp is None:
            self._file.close()
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise InputError(f"cannot write: {exc.strerror}", file=str(self.path)) from None

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # a closed pipe
            self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
