"""Checkers: pure functions from History records to metrics and verdicts."""
