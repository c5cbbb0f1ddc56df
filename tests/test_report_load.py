"""The report's load-stage section on synthetic tables of exactly issue 16's shapes: the figures are
in the HTML with the right traces (names, counts, points), invalid stages are hollow grey and
labelled (never on a result line or inside a CI band), the capacity and stages tables, the overhead
over time in one-second windows; a run without stages gets none of it."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchbench.core import report, report_load
from orchbench.core.report_data import RunData, load_run
from orchbench.core.report_load_data import arm_reasons, has_stages, stage_order, windowed_overhead
from results_schema.io import META_TABLE, META_VERSION
from results_schema.schema import SCHEMA_VERSION
from tests.load_fixtures import BASELINE, SLO, overheads_frame, samples_frame, stages_frame
from tests.run_fixtures import make_run_dir

SUMMARY = {
    "schema_version": SCHEMA_VERSION,
    "experiment": "sweep",
    "run_id": "20261201T090000Z-sweep1",
    "created_at": "2026-12-01T09:00:00Z",
    "platform": "local",
    "baseline": BASELINE,
    "compared_arms": ["ref", "nginx"],
    "spec": {"name": "sweep", "slo": SLO},
    "rest": {},
    "grpc": {},
}


def staged_data(tmp: Path, slo: bool = True) -> RunData:
    stages = stages_frame(with_workers_stage=False)  # a spec sweeps rates or workers, never both
    summary = json.loads(json.dumps(SUMMARY))
    if not slo:
        del summary["spec"]["slo"]
    return RunData(
        run_dir=tmp,
        summary=summary,
        samples=samples_frame(),
        stages=stages,
        overheads=overheads_frame(stages),
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    return report.render_html(staged_data(tmp_path_factory.mktemp("staged")))


def _plain(value: Any) -> Any:
    """plotly's typed arrays ({"dtype", "bdata"}) as lists; everything else as it is."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def traces(page: str, div_id: str) -> list[dict[str, Any]]:
    """The plotly traces of the figure drawn into `div_id` (parsed from its Plotly.newPlot call)."""
    m = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', page)
    assert m, f"no figure {div_id}"
    data, _ = json.JSONDecoder().raw_decode(page, m.end())
    return [_plain(t) for t in data]


def names(page: str, div_id: str) -> list[str]:
    return [t["name"] for t in traces(page, div_id)]


def _text(page: str) -> str:
    body = page.split("</head>", 1)[1]
    return re.sub(r"<script.*?</script>", "", body, flags=re.S)


def test_overhead_against_load_one_line_and_band_per_arm_invalid_hollow(page: str) -> None:
    for metric in ("p50", "p99"):
        got = traces(page, f"load-overhead-rest-{metric}")
        assert [t["name"] for t in got] == [
            f"ref {metric} 95 % CI",
            f"ref {metric}",
            f"ref {metric} invalid stages",
            f"nginx {metric} 95 % CI",
            f"nginx {metric}",
            f"nginx {metric} invalid stages",
        ]
        band, line, invalid = got[0], got[1], got[2]
        # the result line and the band cover the valid stages only (100 and 120 req/s are invalid)
        assert line["x"] == [20.0, 40.0, 60.0, 80.0]
        assert band["x"] == [20.0, 40.0, 60.0, 80.0, 80.0, 60.0, 40.0, 20.0] and band["fill"] == "toself"
        assert invalid["x"] == [100.0, 120.0] and invalid["text"] == ["invalid", "invalid"]
        assert invalid["marker"]["symbol"] == "circle-open" and invalid["mode"] == "markers+text"
        assert "k6 dropped 37 iterations" in invalid["hovertext"][0]
    # gRPC: one compared arm, every stage valid
    assert names(page, "load-overhead-grpc-p50") == ["ref p50 95 % CI", "ref p50"]


def test_overhead_line_values_are_the_overheads_table(page: str) -> None:
    ov = overheads_frame(stages_frame())
    want = ov[(ov["transport"] == "rest") & (ov["arm"] == "ref") & (ov["metric"] == "p99") & ov["valid"]]
    line = traces(page, "load-overhead-rest-p99")[1]
    assert line["y"] == pytest.approx(want.sort_values("stage_value")["estimate_ms"].round(4).tolist())


def test_latency_against_achieved_rate_with_knees(page: str) -> None:
    got = traces(page, "load-latency-rest")
    assert [t["name"] for t in got] == [
        "ref p50", "ref p99", "ref knee", "ref invalid stages",
        "nginx p50", "nginx p99", "nginx knee", "nginx invalid stages",
        "model p50", "model p99", "model knee",
    ]  # fmt: skip
    knees = {t["name"]: (t["x"][0], t["y"][0]) for t in got if t["name"].endswith("knee")}
    # the knees of the capacity table (tests/test_capacity_sweep.py)
    assert knees == {
        "ref knee": (pytest.approx(59.88), 16.0),
        "nginx knee": (pytest.approx(79.84), 15.0),
        "model knee": (pytest.approx(99.8), 18.0),
    }
    invalid = got[3]
    assert len(invalid["x"]) == 2 and invalid["marker"]["color"] == "#9a9a9a"
    assert "SLO p99 25 ms" in page


def test_cpu_and_memory_per_arm_per_stage(page: str) -> None:
    cpu = traces(page, "load-cpu-ms-per-1000-rest")
    assert [t["name"] for t in cpu] == ["ref", "nginx", "model"]
    assert all(t["type"] == "bar" and len(t["x"]) == 6 for t in cpu)
    assert cpu[0]["x"][0] == "20 req/s"
    assert cpu[0]["y"][0] == pytest.approx(1800 * 1.02)
    assert cpu[0]["text"] == ["", "", "", "", "invalid", "invalid"]
    assert cpu[1]["marker"]["pattern"]["shape"] == ["", "", "", "", "", "/"]
    assert names(page, "load-peak-rss-mb-rest") == ["ref", "nginx", "model"]
    assert names(page, "load-cpu-ms-per-1000-grpc") == ["ref", "model"]


def test_overhead_over_time_in_one_second_windows(page: str) -> None:
    got = traces(page, "load-over-time-rest")
    assert [t["name"] for t in got] == [
        "ref · 20 req/s",
        "nginx · 20 req/s",
        "ref · 60 req/s",
        "nginx · 60 req/s",
        "ref · 100 req/s (invalid)",
        "nginx · 100 req/s (invalid)",
    ]
    ref20 = got[0]
    assert ref20["x"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    # the fixture's hop: 2 ms in the first second (warm-up), 0.5 ms after
    assert ref20["y"][0] == pytest.approx(2.0, abs=0.08)
    assert ref20["y"][1:] == pytest.approx([0.5] * 4, abs=0.08)
    assert got[4]["line"]["dash"] == "dot" and got[4]["line"]["color"] == "#9a9a9a"
    assert 'id="load-over-time-grpc"' not in page  # no gRPC samples in the fixture


def test_capacity_and_stages_tables_in_the_page(page: str) -> None:
    text = _text(page)
    assert '<h2 id="load">Overhead under load</h2>' in text and 'id="capacity"' in text
    # ref on REST: capacity 60 in [60, 80); the hop costs 40 req/s in [20, 60]; knee 59.9 req/s
    row = re.search(r"<tr><td>REST</td><td>ref</td>(.*?)</tr>", text)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert cells[:6] == ["<b>60</b>", "[60, 80)", "40", "[20, 60]", "59.9", "16.000"]
    assert "within 25 ms" in text and "at most 0.01" in text
    assert "no stage up to 100 req/s broke the SLO (capacity &gt;= it); left out above it: rate-120" in text
    assert "good above the first bad (noise): 80" in text
    # the stages table: every row, invalid ones marked with their reason
    assert text.count("<b class='bad'>invalid</b>") == 3
    assert "invalid</b>: the load generator was saturated: 97 % of its cores&#x27; CPU" in text
    assert "pool the requests of every stage" in text


def test_without_an_slo_the_capacity_is_not_computed(tmp_path: Path) -> None:
    text = _text(report.render_html(staged_data(tmp_path, slo=False)))
    assert "The spec has no SLO" in text
    assert 'id="load-latency-rest"' in text  # the plots are still there


def test_resources_not_measured_are_said(tmp_path: Path) -> None:
    data = staged_data(tmp_path)
    assert data.stages is not None
    data.stages["cpu_ms_per_1000"] = None
    page = report.render_html(data)
    assert "REST: CPU ms per 1000 requests not measured in this run." in page
    assert 'id="load-cpu-ms-per-1000-rest"' not in page and 'id="load-peak-rss-mb-rest"' in page


def test_a_run_without_stages_has_no_load_section(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, transports=("rest",))
    data = load_run(run_dir)
    assert not has_stages(data.stages, data.overheads, data.samples)
    # stage "" everywhere and an empty stages table: still a single-load run
    assert data.samples is not None
    data.samples["stage"] = ""
    data.stages = stages_frame().iloc[0:0]
    page = report.render_html(data)
    assert 'id="load"' not in page and "load-" not in _text(page)
    assert "pool the requests" not in page


def _write_kind(df: Any, path: Path, kind: str) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {META_VERSION: str(SCHEMA_VERSION).encode(), META_TABLE: kind.encode()}
    pq.write_table(table.replace_schema_metadata(meta), path)


def test_load_run_reads_stages_and_overheads(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, transports=("rest",))
    stages = stages_frame()
    _write_kind(stages, run_dir / "stages.parquet", "stages")
    _write_kind(overheads_frame(stages), run_dir / "overheads.parquet", "overheads")
    data = load_run(run_dir)
    assert data.stages is not None and len(data.stages) == len(stages)
    assert data.overheads is not None and set(data.overheads["stage"]) >= {"rate-20", "rate-120"}
    page = report.build_report(run_dir).read_text()
    assert 'id="load-overhead-rest-p50"' in page


def test_stage_order_and_validity() -> None:
    order = stage_order(stages_frame(with_workers_stage=False))
    rest = order[order["transport"] == "rest"]
    assert rest["label"].tolist() == [
        "20 req/s",
        "40 req/s",
        "60 req/s",
        "80 req/s",
        "100 req/s",
        "120 req/s",
    ]
    assert rest["valid"].tolist() == [True, True, True, True, False, False]
    assert rest["reasons"].iloc[5] == (
        "ref: k6 dropped 410 iterations; nginx: the load generator was saturated: 97 % of its cores' CPU"
    )


def test_windowed_overhead_skips_thin_windows() -> None:
    samples = samples_frame(rates=(4.0,), seconds=3)  # 4 requests per window per arm: below 5
    assert windowed_overhead(samples, "rest", BASELINE).empty
    got = windowed_overhead(samples, "rest", BASELINE, min_requests=4)
    assert sorted(set(got["arm"])) == ["nginx", "ref"] and got["second"].tolist()[:3] == [0.0, 1.0, 2.0]
    assert (got["requests"] == 4).all()
    assert np.isfinite(got["overhead_ms"]).all()


def test_an_arms_row_shows_its_own_invalid_reasons_once():
    reasons = (
        "arm 'direct' achieved 25.97 req/s, 13.4 % below the requested 30 req/s (allowed: 2 %); "
        "arm 'nginx' achieved 24.77 req/s, 17.4 % below the requested 30 req/s (allowed: 2 %); "
        "k6 dropped 55 iterations (no free VU at the scheduled time); "
        "arm 'direct' achieved 25.97 req/s, 13.4 % below the requested 30 req/s (allowed: 2 %)"
    )
    arms = ["direct", "nginx", "orchestrator"]
    assert arm_reasons(reasons, "direct", arms) == (
        "arm 'direct' achieved 25.97 req/s, 13.4 % below the requested 30 req/s (allowed: 2 %); "
        "k6 dropped 55 iterations (no free VU at the scheduled time)"
    )
    assert (
        arm_reasons(reasons, "orchestrator", arms)
        == "k6 dropped 55 iterations (no free VU at the scheduled time)"
    )
    only_other = "arm 'nginx' achieved 19.00 req/s, 5.0 % below the requested 20 req/s (allowed: 2 %)"
    assert arm_reasons(only_other, "direct", arms) == "another arm's figures (see its row)"


def test_the_memory_plot_names_what_was_measured():
    assert report_load._memory_label({"platform": "local"}) == "peak RSS MB"
    assert report_load._memory_label({"platform": "kubernetes"}) == "peak working set MB"
