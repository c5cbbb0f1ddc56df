"""Read any supported load-tester summary file and detect its format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from results_schema import ghz, k6, safeio, vegeta
from results_schema.errors import ParseError
from results_schema.summary import ToolSummary

PARSERS = {"vegeta": vegeta, "ghz": ghz, "k6": k6}


def detect(data: Any) -> str | None:
    for name, module in PARSERS.items():
        if module.looks_like(data):
            return name
    return None


#: Load-tester summaries are kilobytes; ghz's with per-request `details` are ~150 bytes a request.
MAX_SUMMARY_BYTES = 128 * safeio.MiB


def load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        data = safeio.read_bytes(path, MAX_SUMMARY_BYTES)
    except safeio.UnsafeInput as exc:
        raise ParseError(path, str(exc)) from None
    if not data.strip():
        raise ParseError(path, "empty file")
    try:
        return safeio.loads_json(data)
    except UnicodeDecodeError:
        raise ParseError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ParseError(
            path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except safeio.UnsafeInput as exc:
        raise ParseError(path, f"JSON {exc}") from None


def parse_data(data: Any, source: str, tool: str | None = None) -> ToolSummary:
    name = tool or detect(data)
    if name is None:
        raise ParseError(source, "not a vegeta, ghz or k6 summary (format not recognised)")
    if name not in PARSERS:
        raise ParseError(source, f"unknown tool {name!r}")
    try:
        return PARSERS[name].parse(data, source)
    except ParseError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise ParseError(source, f"malformed {name} summary ({type(exc).__name__}: {exc})") from None


def load_summary(path: str | Path, tool: str | None = None) -> ToolSummary:
    """Parse a vegeta / ghz / k6 summary file; any problem is a ParseError naming the file."""
    return parse_data(load_json(path), str(path), tool)
