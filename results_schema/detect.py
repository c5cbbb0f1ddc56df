"""Read any supported load-tester summary file and detect its format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from results_schema import ghz, k6, vegeta
from results_schema.errors import ParseError
from results_schema.summary import ToolSummary

PARSERS = {"vegeta": vegeta, "ghz": ghz, "k6": k6}


def detect(data: Any) -> str | None:
    for name, module in PARSERS.items():
        if module.looks_like(data):
            return name
    return None


def load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ParseError(path, "no such file") from None
    except IsADirectoryError:
        raise ParseError(path, "is a directory, expected a JSON file") from None
    except UnicodeDecodeError:
        raise ParseError(path, "not UTF-8 text") from None
    except OSError as exc:
        raise ParseError(path, f"cannot read ({exc.strerror})") from None
    if not text.strip():
        raise ParseError(path, "empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ParseError(path, "JSON nested too deeply") from None


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
