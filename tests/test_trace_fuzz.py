"""Fuzzing every importer: random bytes and mutated real lines either import or fail with
an InputError naming the file; every non-blank line is a record or counted as skipped, and
every record fits the schema."""

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import InputError
from harness.trace.importers import ImportOptions, ImportStats, import_records
from harness.trace.schema import schema_errors

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "fixtures/traces/samples"
SAMPLE_LINES = {fmt: (SAMPLES / f"{fmt}-access.log").read_bytes().splitlines()
                for fmt in ("haproxy", "nginx")}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def run(fmt: str, data: bytes, skip_bad: bool) -> tuple[list, ImportStats, bool]:
    """Records, counts, and whether it failed (with an InputError naming the file)."""
    with tempfile.NamedTemporaryFile(suffix=f".{fmt}", delete=False) as f:
        f.write(data)
    path = Path(f.name)
    stats = ImportStats()
    try:
        records = list(import_records(fmt, path, ImportOptions(skip_bad=skip_bad), stats))
    except InputError as exc:
        assert exc.file == str(path) and exc.message
        return [], stats, True
    finally:
        path.unlink()
    for record in records:
        data = {k: v for k, v in asdict(record).items() if v is not None}
        data["t"] = 0.0  # Unix time here; the writer makes it relative to the first
        assert schema_errors(json.loads(json.dumps(data)), header=False) == []
    return records, stats, False


def mutate(line: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for position, delete, insert in edits:
        at = position % (len(line) + 1)
        line = line[:at] + insert + line[at + delete:]
    return line


edits = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 5), st.binary(max_size=4)),
                 max_size=4)


def consistent(data: bytes, records: list, stats: ImportStats) -> None:
    data = data.removeprefix(b"\xef\xbb\xbf")  # a byte order mark is no line
    non_blank = sum(1 for line in data.split(b"\n") if line.strip())
    assert stats.units == non_blank  # \r alone does not split a line
    assert len(records) == stats.records and stats.records + stats.skipped == stats.units


@FUZZ
@given(fmt=st.sampled_from(["haproxy", "nginx"]), data=st.binary(max_size=600))
def test_random_bytes_in_logs(fmt, data):
    records, stats, failed = run(fmt, data, skip_bad=True)
    assert not failed  # with --skip-bad a log line is never an error
    consistent(data, records, stats)
    run(fmt, data, skip_bad=False)


@FUZZ
@given(fmt=st.sampled_from(["haproxy", "nginx"]), picks=st.lists(
    st.tuples(st.integers(0, 100), edits), min_size=1, max_size=6))
def test_mutated_real_lines(fmt, picks):
    lines = SAMPLE_LINES[fmt]
    data = b"\n".join(mutate(lines[i % len(lines)], e) for i, e in picks) + b"\n"
    records, stats, failed = run(fmt, data, skip_bad=True)
    assert not failed
    consistent(data, records, stats)
    strict, strict_stats, failed = run(fmt, data, skip_bad=False)
    assert failed or (len(strict), strict_stats.skipped) == (len(records), stats.skipped)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3), max_leaves=10)
ENTRY = {"startedDateTime": "2026-11-25T15:00:00Z",
         "request": {"method": "GET", "url": "http://127.0.0.1/", "headers": []},
         "response": {"status": 200, "headers": []}}


@st.composite
def har_entries(draw):
    """Real-shaped entries with random parts replaced by random JSON."""
    entry = json.loads(json.dumps(ENTRY))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from([entry] + [entry[k] for k in ("request", "response")
                                                if isinstance(entry.get(k), dict)]))
        key = draw(st.sampled_from(["startedDateTime", "request", "response", "method", "url",
                                    "headers", "cookies", "postData", "status", "x"]))
        where[key] = draw(json_values)
    return entry


@FUZZ
@given(entries=st.lists(har_entries(), max_size=4), skip_bad=st.booleans())
def test_random_har_entries(entries, skip_bad):
    data = json.dumps({"log": {"version": "1.2", "entries": entries}}).encode()
    records, stats, failed = run("har", data, skip_bad)
    if not failed:
        assert stats.records + stats.skipped == stats.units == len(entries)


@FUZZ
@given(cut=st.integers(0, 10**6), junk=st.binary(max_size=8))
def test_truncated_or_garbled_har(cut, junk):
    data = json.dumps({"log": {"version": "1.2", "entries": [ENTRY] * 3}}, indent=1).encode()
    at = cut % len(data)
    run("har", data[:at] + junk, skip_bad=True)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_har(data):
    records, _, _ = run("har", data, skip_bad=True)
    assert records == []
