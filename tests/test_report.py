"""`orchbench report`: a synthetic run directory (real schema writers) becomes one self-contained HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from orchbench.core import report
from orchbench.core.errors import ConfigError, SchemaVersionError
from tests.helpers import orchbench
from tests.run_fixtures import PROVENANCE, make_run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def page(run_dir: Path) -> str:
    return report.build_report(run_dir).read_text()


# ---------------------------------------------------------------------------------------------------
# pure builders


def test_transport_result_reads_summary_values_and_seed() -> None:
    summary = {
        "rest": {
            "overhead_ms": {
                "mean": {"estimate": 0.31, "ci95": [0.25, 0.37]},
                "p50": {"estimate": 0.2, "ci95": [0.1, 0.3]},
            },
            "n": {"with": 1200, "without": 1250},
            "mann_whitney_u_p": 1e-9,
            "arms": {
                "with": {"latency_ms": {"mean": 6.5, "p99": 9.0}},
                "without": {"latency_ms": {"mean": 6.19}},
            },
            "threshold_ms": 5.0,
            "verdict": "pass",
        }
    }
    res = report.transport_result(summary, "rest")
    rows = {r.metric: r for r in res.rows}
    assert rows["mean"] == report.OverheadRow("mean", 6.5, 6.19, 0.31, (0.25, 0.37), 8.968882)
    assert rows["p50"].seed_ms == 6.703695
    assert rows["p90"] == report.OverheadRow("p90", None, None, None, None, 14.025617)
    assert rows["p99"].with_ms == 9.0 and rows["p99"].without_ms is None
    assert (res.n_with, res.n_without, res.mann_whitney_u_p, res.threshold_ms, res.verdict) == (
        1200,
        1250,
        1e-9,
        5.0,
        "pass",
    )


def test_fmt_p_never_prints_an_underflowed_p_as_zero() -> None:
    assert report.fmt_p(0.0) == "< 1e-300"
    assert report.fmt_p(4.37e-45) == "4.37e-45"
    assert report.fmt_p(0.5) == "0.5"
    assert report.fmt_p(None) == "—"


def test_transport_result_missing_transport_is_all_none() -> None:
    res = report.transport_result({"rest": {}}, "grpc")
    assert all(r.overhead_ms is None and r.ci95 is None for r in res.rows)
    assert res.verdict is None and res.n_with is None
    assert res.rows[0].seed_ms == 3.748203


def test_seed_numbers_prefer_summary_values() -> None:
    got = report.seed_numbers({"seed": {"rest": {"mean": 1.5}}})
    assert got["rest"]["mean"] == 1.5
    assert got["rest"]["p50"] == 6.703695
    assert got["grpc"]["mean"] == 3.748203


def test_transports_in_order_and_presence() -> None:
    assert report.transports_in({"grpc": {}, "rest": {}}) == ["rest", "grpc"]
    assert report.transports_in({"rest": {}}) == ["rest"]
    assert report.transports_in({}) == []


def test_cdf_points_small_is_exact_ecdf() -> None:
    x, y = report.cdf_points(np.array([3.0, 1.0, 2.0, 2.0]))
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0]
    assert y.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_cdf_points_downsampled_keeps_percentiles_exact() -> None:
    values = np.random.default_rng(3).lognormal(1.8, 0.4, 100_003)
    x, y = report.cdf_points(values, max_points=5_000)
    assert len(x) <= 5_000 + len(report.CDF_EXACT_QUANTILES)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) > 0)
    assert x[0] == values.min() and x[-1] == values.max() and y[-1] == 1.0
    for q in report.CDF_EXACT_QUANTILES:
        first = int(np.argmax(y >= q - 1e-12))  # the plot's answer to "which latency is the q-quantile"
        assert x[first] == np.quantile(values, q, method="inverted_cdf"), q


def test_histogram_fractions_and_tail() -> None:
    arms = {"with": np.array([1.0, 1.1, 1.2, 50.0]), "without": np.array([1.0, 1.0, 1.05, 1.1])}
    edges, fractions, tails = report.histogram(arms, bins=4, upper_quantile=0.9)  # cut at 15.84 ms
    assert edges[0] == 1.0
    assert tails["with"] == 1 and tails["without"] == 0
    assert fractions["with"].sum() == pytest.approx(0.75)
    assert fractions["without"].sum() == pytest.approx(1.0)


def test_block_medians_from_samples_count_ok_only() -> None:
    df = pd.DataFrame(
        {
            "transport": ["rest"] * 6,
            "arm": ["with", "with", "with", "without", "without", "without"],
            "block": [0, 0, 0, 0, 0, 0],
            "latency_ns": [1_000_000, 3_000_000, 900_000_000, 2_000_000, 4_000_000, 6_000_000],
            "ok": [True, True, False, True, True, True],
            "timestamp": pd.to_datetime([5, 6, 7, 1, 2, 3], unit="s", utc=True),
        }
    )
    out, source = report.block_medians(df, None)
    got = {r.arm: (r.median_ms, r.started) for r in out.itertuples()}
    assert got["with"][0] == 2.0 and got["without"][0] == 4.0
    assert got["without"][1] < got["with"][1]
    assert "samples" in source


def test_block_medians_fall_back_to_runs_table() -> None:
    runs = pd.DataFrame(
        {
            "transport": ["grpc", "grpc"],
            "arm": ["with", "without"],
            "block": [2, 2],
            "latency_p50_ns": [5_500_000, 5_000_000],
            "started_at": [pd.NaT, pd.NaT],
        }
    )
    out, source = report.block_medians(None, runs)
    assert sorted(out["median_ms"]) == [5.0, 5.5]
    assert "results.parquet" in source
    empty, _ = report.block_medians(None, None)
    assert empty.empty


# ---------------------------------------------------------------------------------------------------
# the whole report


def _text(page: str) -> str:
    """The page without plotly.js, so a value cannot be 'found' inside the library or the plot data."""
    body = page.split("</head>", 1)[1]
    return re.sub(r"<script.*?</script>", "", body, flags=re.S)


def test_report_default_path_and_self_contained(run_dir: Path, page: str) -> None:
    assert (run_dir / "report.html").is_file()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", page), "no external scripts"
    assert not re.search(r"<link[^>]+href=", page), "no external stylesheets"
    assert page.count("Plotly.newPlot") >= 6
    assert page.count(get_plotlyjs()[:300]) == 1, "plotly.js inlined exactly once"


def test_report_table_has_summary_values(run_dir: Path, page: str) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    text = _text(page)
    for transport in ("rest", "grpc"):
        block = summary[transport]
        for metric in ("mean", "p50", "p90", "p99"):
            est = block["overhead_ms"][metric]
            assert f"{est['estimate']:+.3f}" in text, (transport, metric)
            assert f"[{est['ci95'][0]:+.3f}, {est['ci95'][1]:+.3f}]" in text, (transport, metric)
            assert f"{block['arms']['with']['latency_ms'][metric]:.3f}" in text
            assert f"{block['arms']['without']['latency_ms'][metric]:.3f}" in text
        assert f"n = {block['n']['with']} requests with, {block['n']['without']} without" in text
        test = block["paired_test"]["mean"]
        assert f"sign-flip test over {test['n_blocks']} blocks (mean): p = {report.fmt_p(test['p'])}" in text
        assert f"CI method: {block['method']}" in text
    assert text.count("badge pass") >= 4  # headline + table, both transports


def test_report_shows_seed_numbers(page: str) -> None:
    text = _text(page)
    for value in ("+8.969", "+6.704", "+3.748", "+2.037"):
        assert value in text
    assert "seed" in text.lower() and "one run per arm" in text


def test_report_shows_provenance_spec_floor_and_stability(page: str) -> None:
    text = _text(page)
    for value in PROVENANCE.values():
        assert value in text
    assert "kind-bench" in text  # cluster from results.parquet
    assert "duration_s: 12" in text  # the spec as YAML
    assert "0.112" in text and "0.611" in text  # floor values
    assert "NOT stable" in text and "response header x-orchbench-orchestrator (with)" in text


def test_report_has_plot_divs_per_transport(page: str) -> None:
    for kind in ("cdf", "hist", "blocks"):
        for transport in ("rest", "grpc"):
            assert f'id="{kind}-{transport}"' in page, (kind, transport)


def test_report_missing_samples_and_floor(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, transports=("rest",), samples=False, floor=False)
    text = _text(report.build_report(run_dir, tmp_path / "out" / "r.html").read_text())
    assert "no per-request samples" in text
    assert "No measurement floor" in text
    assert 'id="cdf-rest"' not in text and 'id="cdf-grpc"' not in text
    assert 'id="blocks-rest"' in text  # falls back to the per-block p50 in results.parquet
    assert "results.parquet" in text
    assert "GRPC" not in text


def test_report_summary_only(tmp_path: Path) -> None:
    run_dir = tmp_path / "bare"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"schema_version": 1, "run_id": "bare-1"}))
    text = _text(report.build_report(run_dir).read_text())
    assert "bare-1" in text and "no transport results" in text and "No spec recorded" in text


@pytest.mark.parametrize(
    ("setup", "error", "fragment"),
    [
        (lambda d: None, ConfigError, "no such run directory"),
        (lambda d: d.mkdir(), ConfigError, "no summary.json"),
        (lambda d: (d.mkdir(), (d / "summary.json").write_text("{nope")), ConfigError, "not valid JSON"),
        (
            lambda d: (d.mkdir(), (d / "summary.json").write_text("[1]")),
            ConfigError,
            "expected a JSON object",
        ),
        (
            lambda d: (d.mkdir(), (d / "summary.json").write_text('{"schema_version": 99}')),
            SchemaVersionError,
            "99",
        ),
    ],
)
def test_not_a_run_dir(tmp_path: Path, setup, error, fragment) -> None:
    d = tmp_path / "x"
    setup(d)
    with pytest.raises(error, match=fragment):
        report.build_report(d)


def test_cli_report_writes_file(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.html"
    proc = orchbench("report", str(run_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert 'id="cdf-rest"' in out.read_text()


def test_cli_report_bad_run_dir_one_line_exit_2(tmp_path: Path) -> None:
    proc = orchbench("report", str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not an orchbench run directory" in lines[0]
    assert "Traceback" not in proc.stderr


def test_report_downsamples_large_arms(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, transports=("rest",), blocks=4, per_block=6_000)
    page = report.build_report(run_dir).read_text()
    # 4 blocks x 6000 requests, one failed in block 0 -> 23,999 ok requests per arm, drawn with ~20k points
    n_kept = len(report.cdf_points(np.arange(23_999.0))[0])
    assert 20_000 <= n_kept <= 20_000 + len(report.CDF_EXACT_QUANTILES)
    assert page.count(f"({n_kept:,} of 23,999 points)") == 2  # both arms' legends
