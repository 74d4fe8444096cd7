"""Traces: recorded real traffic in the History's request schema (see docs/trace.md)."""

from harness.trace.format import FORMAT, VERSION, TraceHeader, TraceRecord
from harness.trace.io import TraceWriter, read_trace

__all__ = ["FORMAT", "VERSION", "TraceHeader", "TraceRecord", "TraceWriter", "read_trace"]
