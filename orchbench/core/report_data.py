"""What a report is drawn from: loading a run directory (summary.json, samples.parquet,
results.parquet, overheads.parquet, stages.parquet, floor.json, spec.yaml) into `RunData`, and the
small pure builders the HTML sections use (overhead rows per transport, CDF points, histograms,
per-block medians). No HTML here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchbench.core import stats
from orchbench.core.analysis import SEED_OVERHEAD_MS
from orchbench.core.errors import ConfigError, SchemaVersionError
from results_schema.io import read_table
from results_schema.schema import KNOWN_VERSIONS

TRANSPORTS = ("rest", "grpc")
ARMS = ("with", "without")
TABLE_METRICS = ("mean", "p50", "p90", "p99")
#: Quantiles the downsampled CDF keeps exactly (the order statistic numpy's "inverted_cdf" returns).
CDF_EXACT_QUANTILES = (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
MAX_POINTS_PER_ARM = 20_000
ARM_COLOURS = {"with": "#d62728", "without": "#1f77b4"}
ARM_LABELS = {"with": "with orchestrator", "without": "without orchestrator"}
#: Colours of arms beyond the seed's two, in the run's order.
EXTRA_COLOURS = ("#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def run_arms(summary: Mapping[str, Any], samples: pd.DataFrame | None = None) -> list[str]:
    """The run's arms, the baseline first: summary.json's `baseline` and `compared_arms`, else the
    seed's two (plus any other arm the samples hold)."""
    base, compared = summary.get("baseline"), summary.get("compared_arms")
    if isinstance(base, str) and isinstance(compared, list) and compared:
        out = [str(a) for a in compared] + [base]
    else:
        out = list(ARMS)
    if samples is not None and "arm" in samples:
        out += sorted(set(map(str, samples["arm"].unique())) - set(out))
    return out


def arm_colour(arm: str, arms: Sequence[str]) -> str:
    """The seed's colours for its two arms; otherwise the baseline (last of `arms`) blue, the first
    compared arm red, the others from EXTRA_COLOURS."""
    if set(arms) <= set(ARMS) and arm in ARM_COLOURS:
        return ARM_COLOURS[arm]
    if arms and arm == arms[-1]:
        return ARM_COLOURS["without"]
    i = list(arms).index(arm) if arm in arms else len(arms)
    return ARM_COLOURS["with"] if i == 0 else EXTRA_COLOURS[(i - 1) % len(EXTRA_COLOURS)]


def arm_label(arm: str) -> str:
    return ARM_LABELS.get(arm, arm)


# ---------------------------------------------------------------------------------------------------
# loading


@dataclass
class RunData:
    """Everything a report is drawn from; pieces that are absent are None and explained in `notes`."""

    run_dir: Path
    summary: dict[str, Any]
    samples: pd.DataFrame | None = None
    runs: pd.DataFrame | None = None
    floor: dict[str, Any] | None = None
    #: overheads.parquet (per stage in a run with load stages) and stages.parquet (one row per
    #: transport x stage x arm), when the run wrote them
    overheads: pd.DataFrame | None = None
    stages: pd.DataFrame | None = None
    spec_yaml: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def load_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json of a run directory; anything that is not a run directory is a ConfigError."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not an orchbench run directory (no summary.json)")
    summary = _read_json(path)
    if not isinstance(summary, dict):
        raise ConfigError(f"{path}: not an orchbench summary (expected a JSON object)")
    version = summary.get("schema_version")
    if version not in KNOWN_VERSIONS:
        raise SchemaVersionError(
            f"{path}: schema version {version!r} is unknown to this orchbench"
            f" (knows {sorted(KNOWN_VERSIONS)})"
        )
    return summary


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    data = RunData(run_dir=run_dir, summary=load_summary(run_dir))
    samples_path = run_dir / "samples.parquet"
    if samples_path.is_file():
        data.samples = read_table(samples_path, "samples").to_pandas()
    else:
        data.notes["samples"] = "This run has no per-request samples (samples.parquet is missing)."
    runs_path = run_dir / "results.parquet"
    if runs_path.is_file():
        data.runs = read_table(runs_path, "runs").to_pandas()
    for attr, name in (("overheads", "overheads"), ("stages", "stages")):
        path = run_dir / f"{name}.parquet"
        if path.is_file():
            setattr(data, attr, read_table(path, name).to_pandas())
    floor_path = run_dir / "floor.json"
    floor = _read_json(floor_path) if floor_path.is_file() else data.summary.get("floor")
    if isinstance(floor, dict) and floor:
        data.floor = floor
    else:
        note = data.summary.get("floor_note")  # the spec's `floor: false`, in summary.json's words
        data.notes["floor"] = (
            note
            if isinstance(note, str) and note
            else "No measurement floor was recorded for this run (floor.json is missing)."
        )
    spec_path = run_dir / "spec.yaml"
    if spec_path.is_file():
        data.spec_yaml = spec_path.read_text()
    elif isinstance(data.summary.get("spec"), dict):
        import yaml

        data.spec_yaml = yaml.safe_dump(data.summary["spec"], sort_keys=False)
    return data


# ---------------------------------------------------------------------------------------------------
# pure builders


@dataclass(frozen=True)
class OverheadRow:
    metric: str
    with_ms: float | None
    without_ms: float | None
    overhead_ms: float | None
    ci95: tuple[float, float] | None
    seed_ms: float | None


@dataclass(frozen=True)
class TransportResult:
    transport: str
    rows: list[OverheadRow]
    n_with: int | None
    n_without: int | None
    mann_whitney_u_p: float | None
    threshold_ms: float | None
    verdict: str | None
    method: str | None = None
    paired_test_p: float | None = None  # sign-flip test of the mean block difference
    paired_test_blocks: int | None = None
    verdict_reason: str | None = None
    arm: str = "with"
    baseline: str = "without"
    #: the A/A arm's 95 % CI per metric (the band between two copies of the baseline), if the run had one
    aa_arm: str | None = None
    aa_band: dict[str, tuple[float, float]] | None = None
    within_aa_noise: bool | None = None


def _aa(block: Mapping[str, Any]) -> tuple[str | None, dict[str, tuple[float, float]] | None, bool | None]:
    noise = block.get("aa_noise")
    if not isinstance(noise, Mapping):
        return None, None, None
    band = {
        str(m): (float(v["aa_ci95"][0]), float(v["aa_ci95"][1]))
        for m, v in (noise.get("metrics") or {}).items()
        if isinstance(v, Mapping) and isinstance(v.get("aa_ci95"), Sequence) and len(v["aa_ci95"]) == 2
    }
    flag = noise.get("within_aa_noise")
    return str(noise.get("aa_arm")), band, bool(flag) if flag is not None else None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def dig(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def seed_numbers(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The seed's published overheads: SEED_OVERHEAD_MS, overridden by what summary.json carries."""
    out = {t: dict(v) for t, v in SEED_OVERHEAD_MS.items()}
    for transport, metrics in (summary.get("seed") or {}).items():
        if isinstance(metrics, Mapping):
            for metric, value in metrics.items():
                if number(value) is not None:
                    out.setdefault(transport, {})[metric] = float(value)
    return out


def transports_in(summary: Mapping[str, Any], samples: pd.DataFrame | None = None) -> list[str]:
    """Transports this run has results for, REST first."""
    present = {t for t in TRANSPORTS if isinstance(summary.get(t), Mapping)}
    if samples is not None and "transport" in samples:
        present |= set(samples["transport"].unique()) & set(TRANSPORTS)
    return [t for t in TRANSPORTS if t in present]


def compared_arms(summary: Mapping[str, Any], transport: str) -> list[str | None]:
    """The arms compared with the baseline for `transport` (None: the summary's one, of before)."""
    by_arm = dig(summary, transport, "by_arm")
    return list(by_arm) if isinstance(by_arm, Mapping) and by_arm else [None]


def transport_result(summary: Mapping[str, Any], transport: str, arm: str | None = None) -> TransportResult:
    """The overhead table of one transport (and compared arm) from summary.json (absent: None)."""
    block = summary.get(transport) or {}
    if arm is not None and isinstance(dig(block, "by_arm", arm), Mapping):
        block = block["by_arm"][arm]
    a_name, b_name = str(block.get("arm") or "with"), str(block.get("baseline") or "without")
    seed = seed_numbers(summary).get(transport, {})
    rows = []
    for metric in TABLE_METRICS:
        ci = dig(block, "overhead_ms", metric, "ci95")
        ci_pair = None
        if isinstance(ci, Sequence) and len(ci) == 2 and all(number(v) is not None for v in ci):
            ci_pair = (float(ci[0]), float(ci[1]))
        rows.append(
            OverheadRow(
                metric=metric,
                with_ms=number(dig(block, "arms", a_name, "latency_ms", metric)),
                without_ms=number(dig(block, "arms", b_name, "latency_ms", metric)),
                overhead_ms=number(dig(block, "overhead_ms", metric, "estimate")),
                ci95=ci_pair,
                seed_ms=seed.get(metric),
            )
        )
    n_with, n_without = dig(block, "n", "with"), dig(block, "n", "without")
    verdict = block.get("verdict")
    test = dig(block, "paired_test", "mean")
    n_test = dig(test, "n_blocks")
    aa_info = _aa(block)
    return TransportResult(
        transport=transport,
        rows=rows,
        n_with=int(n_with) if number(n_with) is not None else None,
        n_without=int(n_without) if number(n_without) is not None else None,
        mann_whitney_u_p=number(block.get("mann_whitney_u_p")),
        threshold_ms=number(block.get("threshold_ms")),
        method=str(block["method"]) if block.get("method") else None,
        verdict=str(verdict) if verdict is not None else None,
        paired_test_p=number(dig(test, "p")),
        paired_test_blocks=int(n_test) if number(n_test) is not None else None,
        verdict_reason=str(r) if (r := dig(block, "verdict_detail", "reason")) else None,
        arm=a_name,
        baseline=b_name,
        aa_arm=aa_info[0],
        aa_band=aa_info[1],
        within_aa_noise=aa_info[2],
    )


def cdf_points(values: np.ndarray, max_points: int = MAX_POINTS_PER_ARM) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF (x sorted, y = rank / n). Above `max_points`, keep evenly spaced ranks plus, exactly,
    the order statistics at CDF_EXACT_QUANTILES and the min and max, so percentiles read off the
    plot are the data's own (numpy's "inverted_cdf" quantiles)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    y = np.arange(1, n + 1, dtype=np.float64) / n
    if n <= max_points:
        return x, y
    exact = [max(math.ceil(q * n) - 1, 0) for q in CDF_EXACT_QUANTILES]
    idx = np.unique(np.concatenate([np.linspace(0, n - 1, max_points).round().astype(np.int64), exact]))
    return x[idx], y[idx]


def ok_latencies_ms(samples: pd.DataFrame, transport: str, arm: str) -> np.ndarray:
    sel = samples[(samples["transport"] == transport) & (samples["arm"] == arm) & samples["ok"].astype(bool)]
    return sel["latency_ns"].to_numpy(dtype=np.float64) / 1e6


def histogram(
    arms: Mapping[str, np.ndarray], bins: int = 60, upper_quantile: float = 0.995
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """Shared bin edges over [min, upper_quantile of all arms]; fraction of each arm's requests per bin
    and how many requests of each arm lie beyond the last edge (the tail, not drawn)."""
    values = [v for v in arms.values() if len(v)]
    if not values:
        return np.array([]), {}, {}
    allv = np.concatenate(values)
    lo, hi = float(allv.min()), float(stats.percentile(allv, upper_quantile))
    if hi <= lo:
        hi = lo + 1e-3
    edges = np.linspace(lo, hi, bins + 1)
    fractions, tails = {}, {}
    for arm, v in arms.items():
        counts, _ = np.histogram(v, bins=edges)
        fractions[arm] = counts / len(v) if len(v) else counts.astype(np.float64)
        tails[arm] = int((v > hi).sum())
    return edges, fractions, tails


def block_medians(samples: pd.DataFrame | None, runs: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """Median latency (ms) per (transport, arm, block) and where it came from.

    From samples (ok requests only) when there are any, else from the runs table's per-block p50.
    Columns: transport, arm, block, median_ms, started (first timestamp, for the order within a block).
    """
    cols = ["transport", "arm", "block", "median_ms", "started"]
    if samples is not None and len(samples):
        ok = samples[samples["ok"].astype(bool)]
        grouped = ok.groupby(["transport", "arm", "block"], sort=True)
        out = grouped.agg(median_ns=("latency_ns", "median"), started=("timestamp", "min")).reset_index()
        out["median_ms"] = out["median_ns"] / 1e6
        return out[cols], "median of the successful requests of each block (samples.parquet)"
    if runs is not None and len(runs) and runs["latency_p50_ns"].notna().any():
        r = runs[runs["latency_p50_ns"].notna()]
        out = r[["transport", "arm", "block", "latency_p50_ns", "started_at"]].copy()
        out["median_ms"] = out["latency_p50_ns"] / 1e6
        out = out.rename(columns={"started_at": "started"}).sort_values(["transport", "arm", "block"])
        return out[cols].reset_index(drop=True), "p50 the load tool reported for each block (results.parquet)"
    return pd.DataFrame(columns=cols), ""
