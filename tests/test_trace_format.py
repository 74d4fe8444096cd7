"""The trace format: writer and reader round-trip, the schema accepts what the writer
writes, bad files give file:line errors, and the writer leaves all or nothing."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import InputError
from harness.trace import TraceHeader, TraceRecord, TraceWriter, read_trace
from harness.trace.format import MAX_T
from harness.trace.schema import schema_errors

TOKEN = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~",
                min_size=1, max_size=8)
TEXT = st.text(max_size=20)
FLOAT = st.floats(allow_nan=False, allow_infinity=False, width=64)
# What a request can carry on the wire (control characters but HTAB cannot), and times
# within ten years of the header's start: what the reader accepts.
FIELD = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=[
    *map(chr, range(0, 9)), *map(chr, range(10, 32)), "\x7f"]), max_size=20)
PATH = st.builds(lambda rest: "/" + rest, FIELD.filter(lambda p: " " not in p and "\t" not in p))
TIME = st.floats(-MAX_T, MAX_T, allow_nan=False)
records = st.builds(
    TraceRecord, t=TIME, session=st.text(min_size=1, max_size=20), method=TOKEN,
    path=PATH, client_ip=st.none() | st.ip_addresses().map(str), seq=st.integers(0, 10**6),
    host=st.none() | FIELD.filter(lambda h: " " not in h and "\t" not in h),
    headers_sent=st.dictionaries(TOKEN, FIELD, max_size=3),
    cookies_sent=st.dictionaries(TOKEN, FIELD.filter(lambda v: ";" not in v), max_size=3),
    body=st.none() | TEXT,
    body_size=st.integers(0, 10**9),
    body_sha256=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
    status=st.none() | st.integers(100, 999), replica=st.none() | TEXT,
    set_cookies=st.lists(TEXT, max_size=2), source_line=st.none() | st.integers(1, 10**7))


def write(path: Path, recs: list[TraceRecord], start: float = 1.7e9) -> TraceHeader:
    header = TraceHeader(start=start, source={"format": "test"})
    with TraceWriter(path, header) as writer:
        for r in recs:
            writer.write(r)
    return header


@settings(max_examples=60, deadline=None)
@given(recs=st.lists(records, max_size=5))
def test_round_trip_and_schema(tmp_path_factory, recs):
    path = tmp_path_factory.mktemp("rt") / "trace.jsonl"
    header = write(path, recs)
    with read_trace(path) as reader:
        assert reader.header == header
        assert list(reader) == recs
    lines = [json.loads(line) for line in path.read_text().split("\n") if line]
    assert schema_errors(lines[0], header=True) == []
    for line in lines[1:]:
        assert schema_errors(line, header=False) == []


def test_schema_rejects_what_the_reader_rejects():
    good = asdict(TraceRecord(t=0.5, session="ip:192.0.2.1", method="GET", path="/"))
    assert schema_errors(good, header=False) == []
    for bad in ({"t": "soon"}, {"session": ""}, {"method": "G ET"}, {"status": 42},
                {"body_sha256": "xyz"}, {"extra": 1}):
        errors = schema_errors({**good, **bad}, header=False)
        assert errors, bad
        assert next(iter(bad)) in errors[0] or "extra" in errors[0]


def bad_file(tmp_path: Path, text: bytes) -> InputError:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(text)
    with pytest.raises(InputError) as info, read_trace(path) as reader:
        list(reader)
    assert info.value.file == str(path)
    return info.value


HEADER = b'{"format":"stickler-trace","version":1,"start":0}\n'
GOOD = b'{"t":0,"session":"s","method":"GET","path":"/"}\n'


def test_truncated_last_line_is_named(tmp_path):
    error = bad_file(tmp_path, HEADER + GOOD + GOOD[:20])
    assert error.line == 3 and "truncated" in error.message


def test_invalid_json_and_bad_records_name_the_line(tmp_path):
    assert bad_file(tmp_path, HEADER + GOOD + b"{nope}\n" + GOOD).line == 3
    error = bad_file(tmp_path, HEADER + b"\n" + b'{"t":0,"session":"s","method":"GET"}\n')
    assert (error.line, "path: missing" in error.message) == (3, True)
    error = bad_file(tmp_path, HEADER + b'{"t":0,"session":"s","method":"GET","path":"/",'
                                        b'"status":"200"}\n')
    assert error.line == 2 and "status" in error.message
    assert bad_file(tmp_path, HEADER + b'[1, 2]\n').line == 2
    assert bad_file(tmp_path, HEADER + b'{"t": 1, "session": "\xff"}\n').line == 2


def test_header_is_required_and_versioned(tmp_path):
    assert "empty" in bad_file(tmp_path, b"\n\n").message
    assert bad_file(tmp_path, GOOD).line == 1
    error = bad_file(tmp_path, b'{"format":"stickler-trace","version":2,"start":0}\n')
    assert "version 2" in error.message


def test_writer_leaves_nothing_on_error_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), TraceWriter(path, TraceHeader(start=0)) as writer:
        writer.write(TraceRecord(t=0, session="s", method="GET", path="/"))
        raise RuntimeError("importer failed")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_times_survive_exactly(tmp_path):
    path = tmp_path / "t.jsonl"
    recs = [TraceRecord(t=t, session="s", method="GET", path="/") for t in (0.1, 1e-6, 86400.5)]
    write(path, recs)
    assert [r.t for r in read_trace(path)] == [0.1, 1e-6, 86400.5]
    assert not any(math.isnan(r.t) for r in read_trace(path))
