"""Synthetic tables of a staged run, in exactly the shapes issue 16's load stages write: `stages`
(one row per transport x stage x arm), `overheads` rows with stage columns and `valid`, and samples
with `stage`, `stage_kind`, `stage_value`. Shared by the capacity and report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

BASELINE = "model"
ARMS = ("ref", "nginx", "model")  # compared arms first, the baseline last (the report's order)
SLO = {"p99_ms": 25.0, "max_error_rate": 0.01}
T0_NS = 1_795_593_600_000_000_000

#: (transport, arm, requested req/s, p99 ms, error rate, invalid reason or "")
CURVES: list[tuple[str, str, float, float, float, str]] = [
    # the baseline: good up to 100 req/s, 120 breaks the p99
    ("rest", "model", 20, 12.0, 0.0, ""),
    ("rest", "model", 40, 12.5, 0.0, ""),
    ("rest", "model", 60, 13.0, 0.0, ""),
    ("rest", "model", 80, 14.0, 0.0, ""),
    ("rest", "model", 100, 18.0, 0.0, ""),
    ("rest", "model", 120, 60.0, 0.0, ""),
    # the orchestrator: 80 breaks it; 100 and 120 invalid (k6 dropped iterations)
    ("rest", "ref", 20, 13.0, 0.0, ""),
    ("rest", "ref", 40, 13.5, 0.0, ""),
    ("rest", "ref", 60, 16.0, 0.0, ""),
    ("rest", "ref", 80, 30.0, 0.0, ""),
    ("rest", "ref", 100, 45.0, 0.0, "k6 dropped 37 iterations"),
    ("rest", "ref", 120, 99.0, 0.0, "k6 dropped 410 iterations"),
    # nginx: good up to 100; 120 invalid (the generator saturated): a lower bound only
    ("rest", "nginx", 20, 12.2, 0.0, ""),
    ("rest", "nginx", 40, 12.8, 0.0, ""),
    ("rest", "nginx", 60, 13.5, 0.0, ""),
    ("rest", "nginx", 80, 15.0, 0.0, ""),
    ("rest", "nginx", 100, 24.0, 0.0, ""),
    ("rest", "nginx", 120, 26.0, 0.0, "the load generator was saturated: 97 % of its cores' CPU"),
    # gRPC: the baseline fails on errors at 60, a good 80 above it is noise
    ("grpc", "model", 20, 8.0, 0.0, ""),
    ("grpc", "model", 40, 8.5, 0.0, ""),
    ("grpc", "model", 60, 9.0, 0.05, ""),
    ("grpc", "model", 80, 9.5, 0.0, ""),
    ("grpc", "model", 100, 30.0, 0.0, ""),
    ("grpc", "ref", 20, 9.0, 0.0, ""),
    ("grpc", "ref", 40, 30.0, 0.0, ""),
    ("grpc", "ref", 60, 31.0, 0.0, ""),
    ("grpc", "ref", 80, 40.0, 0.0, ""),
    ("grpc", "ref", 100, 50.0, 0.0, ""),
]
#: CPU ms per 1000 requests of each arm's own processes (the baseline: the model server).
CPU_MS_PER_1000 = {"model": 9_500.0, "ref": 1_800.0, "nginx": 650.0}
PEAK_RSS_MB = {"model": 310.0, "ref": 48.0, "nginx": 12.0}


def stage_id(rate: float) -> str:
    return f"rate-{rate:g}"


def stages_frame(with_workers_stage: bool = True) -> pd.DataFrame:
    """The `stages` table of CURVES (plus a closed-loop row, which capacity ignores)."""
    rows = []
    for transport, arm, rate, p99, err, reason in CURVES:
        achieved = rate * (0.93 if reason.startswith("k6") else 0.998)
        requests = round(achieved * 20)
        rows.append(
            {
                "transport": transport,
                "stage": stage_id(rate),
                "stage_kind": "rate",
                "stage_value": float(rate),
                "arm": arm,
                "requested_rps": float(rate),
                "achieved_rps": achieved,
                "requests": requests,
                "errors": round(err * requests),
                "error_rate": err,
                "dropped_iterations": 37 if "37" in reason else 410 if "410" in reason else 0,
                "generator_cpu_util": 0.97 if "saturated" in reason else 0.3,
                "valid": not reason,
                "invalid_reasons": reason,
                "cpu_ms_per_1000": CPU_MS_PER_1000[arm] * (1 + rate / 1000),
                "peak_rss_mb": PEAK_RSS_MB[arm] + rate / 10,
                "mean_ms": p99 * 0.6,
                "p50_ms": p99 * 0.55,
                "p99_ms": p99,
            }
        )
    if with_workers_stage:
        rows.append({**rows[0], "stage": "workers-4", "stage_kind": "workers", "stage_value": 4.0})
        rows[-1]["requested_rps"] = None
    return pd.DataFrame(rows)


def overheads_frame(stages: pd.DataFrame) -> pd.DataFrame:
    """Overheads rows per transport x compared arm x stage x metric (p50, p99 and mean), valid as
    the stage's rows of `stages` are (a stage is invalid when any arm's row is)."""
    rows = []
    rated = stages[stages["stage_kind"] == "rate"]
    for (transport, stage), grp in rated.groupby(["transport", "stage"], sort=False):
        valid = bool(grp["valid"].all())
        base = grp[grp["arm"] == BASELINE].iloc[0]
        for r in grp[grp["arm"] != BASELINE].itertuples():
            for metric, col in (("mean", "mean_ms"), ("p50", "p50_ms"), ("p99", "p99_ms")):
                est = float(getattr(r, col) - base[col])
                half = 0.05 + 0.02 * abs(est)
                rows.append(
                    {
                        "transport": transport,
                        "arm": r.arm,
                        "baseline": BASELINE,
                        "metric": metric,
                        "estimate_ms": est,
                        "ci_low_ms": est - half,
                        "ci_high_ms": est + half,
                        "se_ms": half / 2.2,
                        "df": 5.0,
                        "n_blocks": 6,
                        "paired_test_p": 0.03,
                        "stage": stage,
                        "stage_kind": "rate",
                        "stage_value": float(r.stage_value),
                        "valid": valid,
                    }
                )
    return pd.DataFrame(rows)


def samples_frame(rates: tuple[float, ...] = (20.0, 60.0, 100.0), seconds: int = 5) -> pd.DataFrame:
    """Samples of REST stages at `rates`, every arm, `seconds` long each: the hop's overhead starts
    at 2 ms in the first second (warm-up) and settles to 0.5 ms (ref) / 0.2 ms (nginx)."""
    rng = np.random.default_rng(7)
    frames = []
    t0 = T0_NS
    for rate in rates:
        n = int(rate * seconds)
        offsets = (np.arange(n) / rate * 1e9).astype(np.int64)
        second = offsets // 1_000_000_000
        for arm, settled in (("ref", 0.5), ("nginx", 0.2), ("model", 0.0)):
            extra = np.where(second == 0, 4 * settled, settled) if settled else np.zeros(n)
            lat_ms = 10.0 + extra + rng.gamma(2.0, 0.05, n)
            frames.append(
                pd.DataFrame(
                    {
                        "transport": "rest",
                        "arm": arm,
                        "block": 0,
                        "seq": np.arange(n),
                        "timestamp": pd.to_datetime(t0 + offsets, unit="ns", utc=True),
                        "latency_ns": (lat_ms * 1e6).astype(np.int64),
                        "status": "200",
                        "ok": True,
                        "stage": stage_id(rate),
                        "stage_kind": "rate",
                        "stage_value": rate,
                    }
                )
            )
        t0 += (seconds + 2) * 1_000_000_000
    return pd.concat(frames, ignore_index=True)
