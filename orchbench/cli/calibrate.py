"""Known-answer calibration: inject a delay into the reference orchestrator and recover it.

Two designs (`--design`):

- **interleaved** (the default): ONE run whose arms are the baseline, a reference orchestrator that
  injects REFERENCE_MS, and one orchestrator per delay d injecting REFERENCE_MS + d, all interleaved
  request by request in the same blocks; then, when the spec has an A/A arm, a second run of the
  baseline and that copy alone (`aa_arms`), each deployed afresh AA_REPLICATES times (`aa_layout`).
  The recovered delay is the mean
  over blocks of the per-block difference p50(arm d) - p50(reference), with a t-interval over blocks
  (n - 1 df). Drift between blocks and runs cancels, and so does what the delay path costs beyond its
  nominal delay, since the reference takes the same path (a loop timer of whole ms, then a
  busy-wait: serving.runtime.after_delay) instead of none.
  Two things keep a delay from changing anything but the latency it adds. The orchestrator holds
  the model's *answer* for the delay, on its way back: a delay held in front of the model
  lengthened the model's idle time before that very request, a model that has idled longer answers
  more slowly here, and the delays came back high by an amount growing with them (+0.05 to +0.10 ms
  at 2 ms). And the requests after a held answer meet a model (and a k6) that idled for that
  delay, so k6 walks the arms in a cycle in which every arm follows every ordered pair of arms,
  itself included, exactly once (loadtools.rotation.balanced_rotation): every arm's requests meet
  the same mix of holds one and two places back, and that carry-over cancels out of arm d minus the
  reference. (Before 2026-12-07 the baseline's request came before every other arm's, which cancels
  the first but spent half the requests on the baseline; then a cycle of every arm after every arm
  once, which left the holds two places back uneven: benchmarks/carryover.py.)
- **runs** (the earlier design): for each injected delay d (and d = 0), run the local benchmark; the
  recovered delay is overhead(d) - overhead(0) per transport. The two runs are independent, so the
  standard error of the difference is se = sqrt(se_d^2 + se_0^2), each run's se and degrees of freedom
  taken from its summary.json (the t-interval over blocks: se = sd / sqrt(n), n - 1 df; never a width /
  1.96), and the 95 % interval is est ± t(0.975, df) · se with Welch-Satterthwaite's df. Measured here
  (benchmarks/README.md) REST came back ~0.15 ms high at every delay: delay 0 takes no timer.

Both designs recover every delay twice, from the p50 and from the mean (`metrics`; the two figures
`orchbench run` leads with): a delay adds to every request, so both should move by it. They differ
in what disturbs them. On a host whose latencies jump between two modes (benchmarks/README.md,
2026-12-06), the per-block p50 difference spread 2-5 times wider than the mean's, a median of ~150
requests landing in either mode; a single slow burst moves a mean, and not a median.

A delay is recovered (`passed`) only when BOTH hold: the interval covers the injected delay, and
the error |recovered - injected| is within 0.05 ms. A run of one block has no interval over blocks,
so calibration refuses it up front with one line (`blocks` must be >= 2).
A benchmark that cannot recover a known 0.5 ms is not to be trusted with an unknown one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from orchbench.cli.run_cmd import run_local
from orchbench.core.errors import ConfigError
from orchbench.core.paths import SPECS
from orchbench.core.spec import Spec, load_spec
from orchbench.core.stats import t_interval, t_quantile
from orchbench.fsio import write_text

CALIBRATE_SPEC = SPECS / "calibrate.yaml"
MAX_ERROR_MS = 0.05
DESIGNS = ("interleaved", "runs")
#: the overhead figures a delay is recovered from (`--metrics`), each in its own rows
METRICS = ("p50", "mean")
#: what `orchbench calibrate --json` prints of each row (and `passed`)
JSON_KEYS = ("transport", "metric", "injected_ms", "recovered_ms", "ci95", "se_ms", "error_ms")
#: the interleaved design's reference arm and its own delay: long enough that the reference and every
#: delayed arm wait the same way, a loop timer of whole ms (3 ms and more here) and then a busy-wait
#: (serving.runtime.sleep_part_s). At 2 ms the reference's timer part was under 1 ms: it never slept
#: while the delayed arms did, and the delays came back high (benchmarks/README.md, "The reference
#: that never slept").
REFERENCE_ARM = "ref"
REFERENCE_MS = 5.0
#: deployment replicates of the A/A run (aa_layout)
AA_REPLICATES = 4


def parse_delays(text: str) -> list[float]:
    try:
        delays = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--delays must be comma-separated numbers of ms, got {text!r}") from None
    if not delays or any(d <= 0 or d > 1000 or not math.isfinite(d) for d in delays):
        raise ConfigError(f"--delays must be positive ms values up to 1000, got {text!r}")
    return delays


def parse_metrics(text: str) -> tuple[str, ...]:
    """`--metrics`: a comma-separated subset of METRICS, in the order given, each once."""
    metrics = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not metrics or any(m not in METRICS for m in metrics):
        raise ConfigError(f"--metrics must be a comma-separated subset of {','.join(METRICS)}, got {text!r}")
    return metrics


def _se_df(entry: dict[str, Any], what: str) -> tuple[float, int]:
    n = entry.get("n_blocks")
    se, df = entry.get("se"), entry.get("df")
    if (n is not None and n < 2) or (se is not None and df is None):
        raise ConfigError(
            f"{what}: {n or 1} block(s); calibration needs >= 2 blocks per run (its interval is over blocks)"
        )
    if se is None or df is None or not math.isfinite(se):
        raise ConfigError(f"{what}: summary.json has no standard error (a run of an older orchbench?)")
    return float(se), int(df)


def recovered(
    run_d: dict[str, Any], run_0: dict[str, Any], transport: str, injected: float, metric: str = "p50"
) -> dict[str, Any]:
    """Pure: the recovered delay, its SE, 95 % CI and verdict from two runs' summary.json dicts."""
    a = run_d[transport]["overhead_ms"][metric]
    b = run_0[transport]["overhead_ms"][metric]
    se_a, df_a = _se_df(a, f"{transport} run with {injected:g} ms injected")
    se_b, df_b = _se_df(b, f"{transport} run without injected delay")
    est = a["estimate"] - b["estimate"]
    se = math.hypot(se_a, se_b)
    # Welch-Satterthwaite degrees of freedom of the difference of two independent t-statistics
    df = (se_a**2 + se_b**2) ** 2 / (se_a**4 / df_a + se_b**4 / df_b) if se > 0 else float(min(df_a, df_b))
    half = t_quantile(max(1, math.floor(df))) * se
    return _row(transport, injected, est, (est - half, est + half), se, round(df, 1), metric)


def _row(
    transport: str,
    injected: float,
    est: float,
    ci95: tuple[float, float],
    se: float,
    df: float | int | None,
    metric: str,
) -> dict[str, Any]:
    """One delay's row, both designs: the estimate, its interval and the verdict (the interval covers
    the injected delay AND the error is within MAX_ERROR_MS)."""
    lo, hi = ci95
    error = est - injected
    covers = lo <= injected <= hi
    close = abs(error) <= MAX_ERROR_MS
    return {
        "transport": transport,
        "injected_ms": injected,
        "recovered_ms": round(est, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "se_ms": round(se, 5),
        "df": df,
        "error_ms": round(error, 4),
        "metric": metric,
        "covers": bool(covers),
        f"within_{MAX_ERROR_MS:g}_ms": bool(close),
        "passed": bool(covers and close),
    }


def delay_arm(delay: float) -> str:
    """The interleaved design's arm for an injected delay: `plus-500us` for 0.5 ms."""
    return f"plus-{round(delay * 1000)}us"


def interleaved_arms(spec: Spec, delays: list[float]) -> list[dict[str, Any]]:
    """The arms of the interleaved design's delay run: the spec's baseline, the reference, and an
    orchestrator per delay (the spec's A/A arms get a run of their own: `aa_arms`)."""
    names = [delay_arm(d) for d in delays]
    if len(set(names)) != len(names):
        raise ConfigError(f"--delays must differ by at least 1 µs each, got {', '.join(map(str, delays))}")
    baseline = [a.model_dump(mode="json") for a in spec.arm_list() if a.baseline]
    delayed = [
        {"name": REFERENCE_ARM, "hop": "orchestrator", "inject_delay_ms": REFERENCE_MS},
        *(
            {"name": name, "hop": "orchestrator", "inject_delay_ms": round(REFERENCE_MS + d, 6)}
            for name, d in zip(names, delays, strict=True)
        ),
    ]
    return baseline + delayed


def aa_arms(spec: Spec) -> list[dict[str, Any]] | None:
    """The interleaved design's A/A run: the spec's baseline and its A/A copies, nothing else (None
    without an A/A arm). Not in the delay run: there the baseline's model server answers every arm
    but the copy (5 requests in 6), the copy's 1 in 6, and the copy came out +0.97 ms (REST) and
    +0.76 ms (gRPC) slower, its interval far from 0 (benchmarks/README.md): the comparison of two
    copies needs them equally busy."""
    arms = spec.arm_list()
    copies = [a.model_dump(mode="json") for a in arms if a.aa]
    if not copies:
        return None
    return [a.model_dump(mode="json") for a in arms if a.baseline] + copies


def aa_layout(blocks: int) -> dict[str, int]:
    """The A/A run's deployment replicates: AA_REPLICATES fresh starts of both copies, the spec's
    blocks shared among them (at least 2 each), so that its interval (over replicates, blocks nested
    inside: orchbench.core.replicates) holds the difference between two starts of the same server.
    With one start of each, two copies differed by -0.19 / -0.22 ms (REST / gRPC), intervals clear of
    0 (benchmarks/README.md): a real difference between two processes, which one start cannot
    average away and a block interval does not contain. Odd replicates start the copy first
    (Spec.deploy_order): the process started second answered ~0.1 ms faster here."""
    per = max(2, blocks // AA_REPLICATES)
    return {"replicates": AA_REPLICATES, "blocks": AA_REPLICATES * per}


def recovered_paired(
    run: dict[str, Any], transport: str, delay: float, metric: str = "p50"
) -> dict[str, Any]:
    """Pure: the interleaved design's recovered delay from one run's summary.json: the per-block
    differences of the delay's arm and the reference arm (each against the same baseline blocks, so
    their difference is the two arms' own), their mean and t-interval over blocks, and the verdict."""
    by_arm = (run.get(transport) or {}).get("by_arm") or {}
    arm = delay_arm(delay)
    if arm not in by_arm or REFERENCE_ARM not in by_arm:
        raise ConfigError(f"{transport}: the run has no arms {arm!r} and {REFERENCE_ARM!r} to compare")
    a = by_arm[arm]["block_diffs_ms"][metric]
    b = by_arm[REFERENCE_ARM]["block_diffs_ms"][metric]
    if len(a) != len(b) or len(a) < 2:
        raise ConfigError(
            f"{transport}: {len(a)} and {len(b)} blocks; calibration needs >= 2 blocks, the same in both arms"
        )
    est = t_interval([x - y for x, y in zip(a, b, strict=True)])
    row = _row(transport, delay, est.estimate, est.ci95, est.se, est.df, metric)
    return {"design": "interleaved", "arm": arm, "reference_ms": REFERENCE_MS} | row


def aa_row(
    run: dict[str, Any], transport: str, run_delay: float | None, metric: str = "p50"
) -> dict[str, Any] | None:
    """Pure: the A/A arm's overhead in one run (two copies of the model, so the truth is 0): its
    estimate and 95 % CI straight from the run's summary.json; `passed` when the CI covers 0.
    `run_delay`: the run's injected delay (design runs), None for the interleaved design's one run."""
    arm = run.get("aa_arm")
    res = ((run.get(transport) or {}).get("by_arm") or {}).get(arm) if arm else None
    if res is None:
        return None
    e = res["overhead_ms"][metric]
    which = "the run" if run_delay is None else f"run with {run_delay:g} ms injected"
    se, df = _se_df(e, f"{transport} A/A arm {arm} ({which})")
    lo, hi = e["ci95"]
    covers = lo <= 0.0 <= hi
    return {
        "kind": "aa",
        "arm": arm,
        "transport": transport,
        "run_delay_ms": run_delay,
        "injected_ms": 0.0,
        "recovered_ms": round(float(e["estimate"]), 4),
        "ci95": [round(float(lo), 4), round(float(hi), 4)],
        "se_ms": round(se, 5),
        "df": df,
        "error_ms": round(float(e["estimate"]), 4),
        "metric": metric,
        "covers": bool(covers),
        "passed": bool(covers),
    }


def _figure(row: dict[str, Any]) -> str:
    """A row's figure in the table: transport and metric, `rest p50`, `grpc mean`."""
    return f"{row['transport']} {row['metric']}"


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The terminal table (80 columns): one line per transport and delay, then the A/A arm's
    interval per run and transport (two copies of the model: it should cover 0)."""
    out = [f"{'figure':<10}{'injected':>9}{'recovered':>11}{'95% CI ms':>20}{'error':>9}  ok"]
    aa_rows = [r for r in rows if r.get("kind") == "aa"]
    rows = [r for r in rows if r.get("kind") != "aa"]
    for r in rows:
        ci = f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
        why = (
            ""
            if r["passed"]
            else (" (CI misses it)" if not r["covers"] else f" (|error| > {MAX_ERROR_MS:g})")
        )
        out.append(
            f"{_figure(r):<10}{r['injected_ms']:>9.3f}{r['recovered_ms']:>11.3f}{ci:>20}"
            f"{r['error_ms']:>+9.3f}  {'yes' if r['passed'] else 'NO' + why}"
        )
    if aa_rows:
        out.append(f"A/A arm {aa_rows[0]['arm']} (a second model server; its interval should cover 0)")
        out.append(f"{'figure':<10}{'run':>9}{'overhead':>11}{'95% CI ms':>20}{'':>9}  covers 0")
        for r in aa_rows:
            ci = f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
            run = "one run" if r["run_delay_ms"] is None else f"{r['run_delay_ms']:g} ms"
            out.append(
                f"{_figure(r):<10}{run:>9}{r['recovered_ms']:>+11.3f}{ci:>20}{'':>9}  "
                f"{'yes' if r['covers'] else 'NO'}"
            )
    return out


def calibrate(
    delays: list[float],
    spec: Path | None,
    out: Path,
    quiet: bool = False,
    design: str = "interleaved",
    metrics: tuple[str, ...] = METRICS,
) -> list[dict[str, Any]]:
    """Every run with the live progress display on stderr (step `calibrate: ...`), unless quiet.
    Rows per metric, then per delay, then per transport; the A/A rows after the delays'."""
    if design not in DESIGNS:
        raise ConfigError(f"--design must be one of {', '.join(DESIGNS)}, got {design!r}")
    if not metrics or any(m not in METRICS for m in metrics):
        raise ConfigError(f"metrics must be a non-empty subset of {', '.join(METRICS)}, got {metrics!r}")
    spec = spec or CALIBRATE_SPEC
    loaded = load_spec(spec)
    if loaded.blocks < 2:
        raise ConfigError(
            f"{spec}: blocks {loaded.blocks}; calibration needs >= 2 blocks per run "
            "(its interval is over blocks)"
        )
    if design == "interleaved":
        rows = _interleaved(delays, loaded, spec, out, quiet, metrics)
    else:
        rows = _separate_runs(delays, spec, out, quiet, metrics)
    write_text(out / "calibration.json", json.dumps(rows, indent=2))
    return rows


def _interleaved(
    delays: list[float], loaded: Spec, spec: Path, out: Path, quiet: bool, metrics: tuple[str, ...]
) -> list[dict[str, Any]]:
    overrides = {"arms": interleaved_arms(loaded, delays), "local.inject_delay_ms": 0.0}
    run_dir = run_local(
        spec,
        out / "interleaved",
        overrides,
        quiet=quiet,
        step=f"calibrate: {', '.join(f'{d:g}' for d in delays)} ms, interleaved",
        show_summary=False,
    )
    run = json.loads((run_dir / "summary.json").read_text())
    transports = [t for t in ("rest", "grpc") if t in run]
    rows = [recovered_paired(run, t, d, m) for m in metrics for d in delays for t in transports]
    copies = aa_arms(loaded)
    if copies is None:
        return rows
    aa_dir = run_local(
        spec,
        out / "aa",
        {"arms": copies, "local.inject_delay_ms": 0.0} | aa_layout(loaded.blocks),
        quiet=quiet,
        step="calibrate: A/A, interleaved",
        show_summary=False,
    )
    aa_run = json.loads((aa_dir / "summary.json").read_text())
    aa = [r for m in metrics for t in transports if (r := aa_row(aa_run, t, None, m)) is not None]
    return rows + aa


def _separate_runs(
    delays: list[float], spec: Path, out: Path, quiet: bool, metrics: tuple[str, ...]
) -> list[dict[str, Any]]:
    runs: dict[float, dict[str, Any]] = {}
    for delay in [0.0, *delays]:
        run_dir = run_local(
            spec,
            out / f"delay-{delay:g}ms",
            {"local.inject_delay_ms": delay},
            quiet=quiet,
            step=f"calibrate: {delay:g} ms injected",
            show_summary=False,
        )
        runs[delay] = json.loads((run_dir / "summary.json").read_text())
    transports = [t for t in ("rest", "grpc") if t in runs[0.0]]
    rows = [
        recovered(runs[d], runs[0.0], t, d, m) | {"design": "runs"}
        for m in metrics
        for d in delays
        for t in transports
    ]
    # the A/A arm (aa: true in the spec), in every run: the noise between two copies of the model
    aa = [
        r
        for m in metrics
        for d in [0.0, *delays]
        for t in transports
        if (r := aa_row(runs[d], t, d, m)) is not None
    ]
    return rows + aa
