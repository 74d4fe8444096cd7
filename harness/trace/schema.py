"""The trace's JSON Schema (trace.schema.json): the full contract, applied by
`stickler trace check` and the tests; the reader does a faster structural check."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("trace.schema.json")


@cache
def _validators():
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_FILE.read_text())
    Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]
    return (Draft202012Validator({**defs["header"], "$defs": defs}),
            Draft202012Validator({**defs["request"], "$defs": defs}))


def schema_errors(data: Any, *, header: bool) -> list[str]:
    """What is wrong with one parsed line, as `key: message` strings (empty when valid)."""
    validator = _validators()[0 if header else 1]
    return [f"{'.'.join(map(str, e.absolute_path)) or '(line)'}: {e.message}"
            for e in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))]
