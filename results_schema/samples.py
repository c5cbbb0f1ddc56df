"""Per-request samples of the load tools, as one pandas DataFrame shape.

Columns: `seq` (int64, 0.. in order of request start), `ts_ns` (int64, epoch ns of request start),
`latency_ns` (int64), `status` (str: "200", "503", "OK", "Unavailable", "0" = no answer / connection
error), `ok` (bool), `phase` ("measure" | "warmup"), `error` (str, the tool's error text or "").
`df.attrs["checks"]` says what `ok` rests on:

- k6 `--out csv` ("joined" or "status"): rows of `http_req_duration` / `grpc_req_duration` (and
  orchbench's `orchbench_connect_errors`); `vu`/`iter` are read from `metadata` (k6 v1) or
  `extra_tags`. k6 stamps a sample when the request ENDS, so
  ts_ns = timestamp - duration. `ok` = status 200/OK, `expected_response` not false, AND the
  iteration's check passed: request and check rows are joined on (scenario, vu, iter) from the
  `vu`/`iter` system tags orchbench's scripts enable. Without those tags, with no check rows, or with
  more than one request per iteration the join is not reliable and `ok` rests on status only
  ("status"). Phase: the `scenario` column (`warmup` or `warmup-<arm>`, else measure).
- ghz `-O json` `details` ("status"): timestamps are the END of the call (ghz's stats End event),
  so ts_ns = timestamp - latency; ok = status "OK". All rows are "measure" (warm-up is a separate,
  discarded run).
- vegeta `encode --to csv` ("body"): timestamps are request starts; ok = code 200, no error, and the
  base64 body has `predictions[0].scores` (when the body column is there; "status" otherwise).

Any malformed input raises ParseError(path, reason), never another exception.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd

from results_schema import safeio
from results_schema._util import timestamp_ns
from results_schema.errors import ParseError

Tool = Literal["k6", "ghz", "vegeta"]
COLUMNS = ["seq", "ts_ns", "latency_ns", "status", "ok", "phase", "error"]
K6_REQUEST_METRICS = ("http_req_duration", "grpc_req_duration", "orchbench_connect_errors")
K6_REQUIRED = ("metric_name", "timestamp", "metric_value", "scenario", "status")
#: google.golang.org/grpc/codes names, as ghz prints them; k6 tags gRPC samples with the number.
GRPC_CODES = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)


def empty_frame() -> pd.DataFrame:
    return _frame(np.array([], "int64"), np.array([], "int64"), [], np.array([], bool), [], [])


def _frame(
    ts_ns: Any, latency_ns: Any, status: list[str], ok: Any, phase: list[str], error: list[str]
) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "ts_ns": np.asarray(ts_ns, dtype="int64"),
            "latency_ns": np.asarray(latency_ns, dtype="int64"),
            "status": pd.Series(status, dtype=object).astype(str),
            "ok": np.asarray(ok, dtype=bool),
            "phase": pd.Series(phase, dtype=object).astype(str),
            "error": pd.Series(error, dtype=object).astype(str),
        }
    )
    df = df.sort_values("ts_ns", kind="stable").reset_index(drop=True)
    df.insert(0, "seq", np.arange(len(df), dtype="int64"))
    return df[COLUMNS]


# ---------------------------------------------------------------------------------------------------
# k6


def _k6_time_to_ns(values: pd.Series, path: str) -> tuple[np.ndarray, int]:
    """k6 CSV timestamps in any `timeFormat` -> (epoch ns, resolution ns)."""
    text = values.astype(str).str.strip()
    if text.str.fullmatch(r"\d+").all():
        digits = int(text.str.len().max())
        scale = {10: 1_000_000_000, 13: 1_000_000, 16: 1_000, 19: 1}.get(digits)
        if scale is None or text.str.len().min() < digits - 1:
            raise ParseError(path, f"k6 CSV: timestamps of {digits} digits are neither s, ms, us nor ns")
        return text.astype("int64").to_numpy() * scale, scale
    try:
        parsed = pd.to_datetime(text, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        raise ParseError(path, "k6 CSV: 'timestamp' is neither unix time nor RFC 3339") from None
    ns = parsed.astype("int64").to_numpy()
    return ns, 1 if (ns % 1_000_000_000).any() else 1_000_000_000


def _grpc_status(code: str) -> str:
    return GRPC_CODES[int(code)] if code.isdigit() and int(code) < len(GRPC_CODES) else code


def _tags(extra: str) -> dict[str, str]:
    return dict(parse_qsl(extra, keep_blank_values=True)) if extra else {}


def parse_k6_csv(path: Path) -> pd.DataFrame:
    """k6 `--out csv` -> samples. See the module docstring for how `ok` and `phase` are decided."""
    spath = str(path)
    _checked(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, engine="c")
    except pd.errors.EmptyDataError:
        raise ParseError(spath, "k6 CSV is empty (no header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ParseError(spath, f"not a readable k6 CSV: {exc}") from None
    missing = [c for c in K6_REQUIRED if c not in raw.columns]
    if missing:
        raise ParseError(spath, f"k6 CSV lacks column(s) {', '.join(missing)}")
    # k6 >= 0.4x writes high-cardinality tags (vu, iter) to `metadata`, other extra tags to `extra_tags`
    extra = pd.Series([""] * len(raw), index=raw.index, dtype=object)
    for col in ("extra_tags", "metadata"):
        if col in raw.columns:
            extra = extra.str.cat(raw[col], sep="&")
    is_req = raw["metric_name"].isin(K6_REQUEST_METRICS)
    is_check = raw["metric_name"] == "checks"
    req = raw[is_req]
    if req.empty:
        df = empty_frame()
        df.attrs["checks"] = "status"
        return df
    try:
        latency_ms = req["metric_value"].astype(float).to_numpy()
    except ValueError:
        raise ParseError(spath, "k6 CSV: non-numeric metric_value in a request row") from None
    if not np.isfinite(latency_ms).all() or (latency_ms < 0).any():
        raise ParseError(spath, "k6 CSV: request durations must be finite and >= 0")
    latency_ns = np.rint(latency_ms * 1e6).astype("int64")
    end_ns, resolution = _k6_time_to_ns(req["timestamp"], spath)
    metric = req["metric_name"].to_numpy()
    status_raw = req["status"].to_numpy()
    status = [
        "0"
        if m == "orchbench_connect_errors" or s == ""
        else (_grpc_status(s) if m == "grpc_req_duration" else s)
        for m, s in zip(metric, status_raw, strict=True)
    ]
    expected = (
        req["expected_response"] if "expected_response" in req.columns else pd.Series("", index=req.index)
    )
    status_ok = np.array([s in ("200", "OK") for s in status]) & (expected.to_numpy() != "false")
    scenario = req["scenario"].to_numpy()
    # `warmup`, or an open-loop stage's per-arm `warmup-<arm>` (loadtools/k6_stages.py)
    phase = ["warmup" if s == "warmup" or s.startswith("warmup-") else "measure" for s in scenario]

    checks_mode = "status"
    ok = status_ok
    if is_check.any():
        req_tags = [_tags(t) for t in extra[is_req]]
        chk = raw[is_check]
        chk_tags = [_tags(t) for t in extra[is_check]]
        keys = [(sc, t.get("vu"), t.get("iter")) for sc, t in zip(scenario, req_tags, strict=True)]
        tagged = all(k[1] and k[2] for k in keys) and all(t.get("vu") and t.get("iter") for t in chk_tags)
        if tagged and len(set(keys)) == len(keys):
            passed: dict[tuple[Any, ...], bool] = {}
            for sc, t, value in zip(chk["scenario"], chk_tags, chk["metric_value"], strict=True):
                key = (sc, t["vu"], t["iter"])
                try:
                    passed[key] = passed.get(key, True) and float(value) == 1.0
                except ValueError:
                    raise ParseError(spath, "k6 CSV: non-numeric value in a checks row") from None
            # a request whose iteration recorded no check (interrupted, threw) is not ok
            ok = status_ok & np.array([passed.get(k, False) for k in keys])
            checks_mode = "joined"
    errors = list(req["error"]) if "error" in req.columns else [""] * len(status)
    df = _frame(end_ns - latency_ns, latency_ns, status, ok, phase, errors)
    df.attrs["checks"] = checks_mode
    df.attrs["timestamp_resolution_ns"] = resolution
    return df


# ---------------------------------------------------------------------------------------------------
# ghz


def ghz_details(data: Any, path: str) -> pd.DataFrame:
    """The `details` array of a ghz JSON report -> samples (all `measure`)."""
    details = data.get("details") if isinstance(data, dict) else None
    if not isinstance(details, list):
        raise ParseError(path, "ghz report has no 'details' array")
    ts, lat, status, ok, errors = [], [], [], [], []
    for i, d in enumerate(details):
        if not isinstance(d, dict):
            raise ParseError(path, f"details[{i}] must be an object")
        latency = d.get("latency")
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
            raise ParseError(
                path, f"details[{i}].latency must be a non-negative integer (ns), got {latency!r}"
            )
        end = timestamp_ns(d.get("timestamp"), path, f"details[{i}].timestamp")
        if end is None:
            raise ParseError(path, f"details[{i}] has no timestamp")
        st = d.get("status") or ""
        err = d.get("error") or ""
        if not isinstance(st, str) or not isinstance(err, str):
            raise ParseError(path, f"details[{i}].status and .error must be strings")
        st = st or ("0" if err else "OK")
        ts.append(end - latency)
        lat.append(latency)
        status.append(st)
        ok.append(st == "OK" and not err)
        errors.append(err)
    df = _frame(ts, lat, status, ok, ["measure"] * len(ts), errors)
    df.attrs["checks"] = "status"
    return df


def parse_ghz_json(path: Path) -> pd.DataFrame:
    return ghz_details(_read_json(path), str(path))


#: Per-request samples files: a long run at a high rate writes millions of rows, but not this many.
MAX_SAMPLES_BYTES = 4096 * safeio.MiB
#: ghz JSON with per-request `details` (about 150 bytes a request: some 850,000 requests).
MAX_GHZ_JSON_BYTES = 128 * safeio.MiB


def _checked(path: Path, limit: int = MAX_SAMPLES_BYTES) -> None:
    try:
        safeio.require_regular(path, limit)
    except safeio.UnsafeInput as exc:
        raise ParseError(str(path), str(exc)) from None


def _read_json(path: Path) -> Any:
    try:
        return safeio.read_json(path, MAX_GHZ_JSON_BYTES)
    except safeio.UnsafeInput as exc:
        raise ParseError(str(path), str(exc)) from None
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError):
            raise ParseError(str(path), "not UTF-8 JSON") from None
        raise ParseError(str(path), f"not JSON: {exc.msg} at line {exc.lineno}") from None


# ---------------------------------------------------------------------------------------------------
# vegeta

_VEGETA_MIN_FIELDS = 6  # timestamp, code, latency, bytes out, bytes in, error [, body, attack, seq, ...]


def _has_scores(body_b64: str) -> bool:
    try:
        doc = json.loads(base64.b64decode(body_b64, validate=True))
        scores = doc["predictions"][0]["scores"]
    except (binascii.Error, ValueError, KeyError, IndexError, TypeError):
        return False
    return isinstance(scores, list) and len(scores) > 0


def parse_vegeta_csv(path: Path, phase: str = "measure") -> pd.DataFrame:
    """`vegeta encode --to csv` (no header) -> samples."""
    spath = str(path)
    _checked(path)
    ts, lat, status, ok, errors = [], [], [], [], []
    bodies = True
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                if not row:
                    continue
                if len(row) < _VEGETA_MIN_FIELDS:
                    raise ParseError(spath, f"line {n}: {len(row)} fields, a vegeta CSV row has at least 6")
                try:
                    t, code, latency = int(row[0]), int(row[1]), int(row[2])
                except ValueError:
                    raise ParseError(
                        spath, f"line {n}: timestamp, code and latency must be integers"
                    ) from None
                if latency < 0 or t < 0:
                    raise ParseError(spath, f"line {n}: negative timestamp or latency")
                error = row[5]
                good = code == 200 and not error
                if len(row) > 6:
                    good = good and _has_scores(row[6])
                else:
                    bodies = False
                ts.append(t)
                lat.append(latency)
                status.append(str(code))
                ok.append(good)
                errors.append(error)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ParseError(spath, f"not a readable vegeta CSV: {exc}") from None
    df = _frame(ts, lat, status, ok, [phase] * len(ts), errors)
    df.attrs["checks"] = "body" if bodies and ts else "status"
    return df


# ---------------------------------------------------------------------------------------------------
# entry points


def detect_tool(path: Path) -> Tool:
    """k6 CSV (header starting metric_name), vegeta CSV (numeric first field), or ghz JSON."""
    _checked(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError as exc:
        raise ParseError(str(path), f"cannot read: {exc.strerror}") from None
    text = head.lstrip()
    if text.startswith(b"{"):
        return "ghz"
    if text.startswith(b"metric_name"):
        return "k6"
    first = text.split(b",", 1)[0]
    if first.isdigit():
        return "vegeta"
    raise ParseError(str(path), "not a k6 CSV, vegeta CSV or ghz JSON samples file")


def load_samples(path: Path, tool: Tool | None = None, measure_only: bool = False) -> pd.DataFrame:
    """Samples of one run from a k6 CSV, vegeta CSV or ghz JSON (`tool` detected when None).
    `measure_only` drops warm-up rows (and renumbers `seq`)."""
    path = Path(path)
    kind = tool or detect_tool(path)
    parsers = {"k6": parse_k6_csv, "ghz": parse_ghz_json, "vegeta": parse_vegeta_csv}
    if kind not in parsers:
        raise ParseError(str(path), f"unknown samples format {kind!r}")
    df = parsers[kind](path)
    if measure_only:
        attrs = dict(df.attrs)
        df = df[df["phase"] == "measure"].reset_index(drop=True)
        df["seq"] = np.arange(len(df), dtype="int64")
        df.attrs.update(attrs)
    return df


read_samples = load_samples


def embedded_samples(path: Path) -> pd.DataFrame | None:
    """Samples carried inside a summary file (ghz JSON with `details`), else None."""
    try:
        safeio.require_regular(path, MAX_GHZ_JSON_BYTES)
    except safeio.UnsafeInput:
        return None  # the summary itself was read (and refused, if need be) by load_summary
    try:
        with open(path, "rb") as fh:
            if not fh.read(64).lstrip().startswith(b"{"):
                return None
    except OSError:
        return None
    data = _read_json(Path(path))
    if isinstance(data, dict) and isinstance(data.get("details"), list):
        return ghz_details(data, str(path))
    return None


__all__ = [
    "COLUMNS",
    "detect_tool",
    "embedded_samples",
    "load_samples",
    "parse_ghz_json",
    "parse_k6_csv",
    "parse_vegeta_csv",
    "read_samples",
]
