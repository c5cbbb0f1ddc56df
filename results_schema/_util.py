"""Small typed accessors shared by the parsers: each failure becomes a ParseError naming the file."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from results_schema.errors import ParseError


def obj(data: Any, key: str, path: str, where: str = "") -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, dict):
        raise ParseError(path, f"{where}{key!r} must be an object")
    return value


def num(data: dict[str, Any], key: str, path: str, where: str = "", required: bool = True) -> float | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParseError(path, f"{where}{key!r} must be a finite number, got {value!r}")
    return float(value)


def ns(value: float | None) -> int | None:
    return None if value is None else round(value)


def count(data: dict[str, Any], key: str, path: str, where: str = "", required: bool = True) -> int | None:
    value = num(data, key, path, where, required)
    if value is None:
        return None
    if value < 0 or value != int(value):
        raise ParseError(path, f"{where}{key!r} must be a non-negative whole number, got {value!r}")
    return int(value)


def counts(data: Any, path: str, where: str) -> dict[str, int]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParseError(path, f"{where} must be an object of counts")
    out: dict[str, int] = {}
    for key in data:
        value = count(data, key, path, f"{where}.")
        assert value is not None
        out[str(key)] = value
    return out


def timestamp_ns(value: Any, path: str, where: str) -> int | None:
    """RFC 3339 with up to 9 fractional digits (Go's format) -> epoch ns."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(path, f"{where} must be an RFC 3339 timestamp, got {value!r}")
    text = value.strip()
    try:
        main, frac_tz = text, ""
        if "." in text:
            main, frac_tz = text.split(".", 1)
            digits = len(frac_tz) - len(frac_tz.lstrip("0123456789"))
            frac, tz = frac_tz[:digits], frac_tz[digits:]
        else:
            frac = ""
            tz = ""
            for sep in ("Z", "+", "-"):
                idx = text.rfind(sep)
                if idx > 10:
                    main, tz = text[:idx], text[idx:]
                    break
        if tz in ("Z", "z", ""):
            tz = "+00:00"
        base = datetime.fromisoformat(main + tz)
        frac_ns = int((frac + "000000000")[:9]) if frac else 0
        return int(base.timestamp()) * 1_000_000_000 + frac_ns
    except (ValueError, IndexError):
        raise ParseError(path, f"{where}: cannot read timestamp {value!r}") from None
