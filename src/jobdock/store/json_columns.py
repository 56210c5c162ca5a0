"""JSON columns read back from either store."""

from __future__ import annotations

import json
import json.scanner
import sys
from typing import Any

# The json module's own (C) scanner, called without json.loads' checks and regular
# expressions around it: 0.1-0.2 µs for a small input against json.loads' 0.8-1.
# (typeshed asks for a scanner as its context; json.JSONDecoder passes itself, as here.)
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def fast_loads(text: str | None) -> Any:
    """JSON text as values.

    With pydantic-core's parser when the process has loaded it anyway (the API):
    about ten times faster than json.loads, which was a tenth of a list page's
    time (six columns per job). A worker of plain kinds does not load it (13 ms
    and 3 MB per process): there the json scanner reads its jobs' inputs, about
    0.05 µs slower than pydantic-core on a small one."""
    if text is None:
        return None
    core = sys.modules.get("pydantic_core")
    if core is not None:
        try:
            return core.from_json(text)
        except ValueError:  # what only json.loads accepts (an escaped lone surrogate)
            return json.loads(text)
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # not a value at the first character (e.g. a space first)
        return json.loads(text)
    if end != len(text):  # something after the value: json.loads says what
        return json.loads(text)
    return value
