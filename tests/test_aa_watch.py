"""The A/A arm (item 7), the live display's tables (item 8) and the precision-run wiring (item 5):
rules on literal fixture data (fast), and two tiny end-to-end runs (slow)."""

from __future__ import annotations

import copy
import io
import json

import pytest
import yaml
from rich.console import Console

from orchbench.cli.calibrate import aa_row, table_lines
from orchbench.cli.tables import running_table, summary_tables
from orchbench.core import aa, precision_run
from orchbench.core.errors import ConfigError
from orchbench.core.spec import parse_spec
from orchbench.core.watch import Running, block_seconds
from serving.runtime import free_port
from tests.helpers import orchbench


def _entry(est, lo, hi, n=6, se=0.01):
    return {"estimate": est, "ci95": [lo, hi], "se": se, "df": n - 1, "n_blocks": n}


def _arm(name, mean, p50, diffs=None):
    return {
        "arm": name,
        "baseline": "without",
        "overhead_ms": {"mean": _entry(*mean), "p50": _entry(*p50)},
        "arms": {
            name: {"latency_ms": {"mean": 3.912, "p50": 3.801}},
            "without": {"latency_ms": {"mean": 3.567, "p50": 3.456}},
        },
        "verdict": "pass",
        "block_diffs_ms": diffs or {"mean": [0.3, 0.35, 0.4], "p50": [0.3, 0.32, 0.34]},
    }


#: A summary.json fragment, literal: "with" stands clear of the A/A band, "slim" does not (its p50
#: interval meets the band's), "aa" is the A/A arm itself.
SUMMARY = {
    "run_id": "fixture",
    "compared_arms": ["with", "slim", "aa"],
    "aa_arm": "aa",
    "rest": {
        "by_arm": {
            "with": _arm("with", (0.345, 0.317, 0.374), (0.33, 0.30, 0.36)),
            "slim": _arm("slim", (0.120, 0.060, 0.180), (0.05, 0.02, 0.08)),
            "aa": _arm("aa", (0.010, -0.020, 0.040), (-0.005, -0.03, 0.021)),
        }
    },
}


def test_aa_flag_rule_on_literal_data():
    by_arm = copy.deepcopy(SUMMARY["rest"]["by_arm"])
    flags = aa.flag_arms(by_arm, "aa")
    assert flags == {"with": False, "slim": True}
    assert by_arm["aa"]["aa_control"] is True
    slim = by_arm["slim"]["aa_noise"]
    assert slim["metrics"] == {
        "mean": {"aa_ci95": [-0.02, 0.04], "within_aa_noise": False},
        "p50": {"aa_ci95": [-0.03, 0.021], "within_aa_noise": True},
    }
    assert slim["within_aa_noise"] is True and "overlaps" in slim["rule"]
    # touching intervals overlap; a missing interval is never "clear"
    assert aa.overlaps((0.0, 1.0), (1.0, 2.0)) and not aa.overlaps((0.0, 0.99), (1.0, 2.0))
    assert aa.overlaps(None, (1.0, 2.0))
    assert aa.flag_arms(by_arm, None) == {}


def test_spec_aa_arm():
    base = {"name": "x", "platform": "local"}
    spec = parse_spec(
        {
            **base,
            "arms": [{"name": "without", "baseline": True}, {"name": "with"}, {"name": "aa", "aa": True}],
        }
    )
    assert spec.aa_arm() == "aa" and spec.arm("aa").local_hop() == "model"
    # aa: false is left out of the dump, so specs without it compile as before
    assert "aa" not in spec.to_json_dict()["arms"][1]
    with pytest.raises(ConfigError, match="copy of the baseline"):
        parse_spec(
            {
                **base,
                "arms": [{"name": "without", "baseline": True}, {"name": "a", "aa": True, "hop": "nginx"}],
            }
        )
    with pytest.raises(ConfigError, match="at most one arm"):
        parse_spec(
            {
                **base,
                "arms": [
                    {"name": "without", "baseline": True},
                    {"name": "a", "aa": True},
                    {"name": "b", "aa": True},
                ],
            }
        )


def _render(table, width=80):
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(table)
    return buf.getvalue().splitlines()


def test_summary_table_fits_80_columns_and_no_cell_wraps():
    summary = copy.deepcopy(SUMMARY)
    aa.flag_arms(summary["rest"]["by_arm"], "aa")
    summary["rest"].update(summary["rest"]["by_arm"]["with"])
    tables = summary_tables(summary)
    assert len(tables) == 3
    for table in tables:
        lines = _render(table)
        assert max(len(line) for line in lines) <= 80, lines
        body = [line for line in lines if line.startswith(("│", "┃"))]
        # header + one line per metric: nothing wrapped onto a second line
        assert len(body) == 1 + 2, lines
        text = "\n".join(lines)
        assert "…" not in text, text  # nothing cut either
    with_text = "\n".join(_render(tables[0]))
    assert "[+0.317, +0.374]" in with_text and "stands clear" in with_text
    assert "WITHIN A/A NOISE" in "\n".join(_render(tables[1]))


def test_running_table_fits_80_columns():
    rows = [
        Running(t, arm, "without", m, 12, -10.123, (-10.456, -9.789))
        for t in ("rest", "grpc")
        for arm in ("with", "a-long-arm-name-of-32-characters")
        for m in ("mean", "p50")
    ]
    lines = _render(running_table(rows, title="running estimate (overhead, 95% CI)"))
    assert max(len(line) for line in lines) <= 80, lines
    assert len([line for line in lines if line.startswith(("│", "┃"))]) == 1 + 4, lines


def test_calibration_table_reports_the_aa_arm():
    run = {"aa_arm": "aa", "rest": {"by_arm": {"aa": {"overhead_ms": {"p50": _entry(0.004, -0.012, 0.02)}}}}}
    row = aa_row(run, "rest", 0.5)
    assert row is not None
    assert row["kind"] == "aa" and row["covers"] and row["passed"] and row["injected_ms"] == 0.0
    assert aa_row({"rest": {}}, "rest", 0.0) is None
    lines = table_lines([row])
    assert lines[1].startswith("A/A arm aa") and lines[-1].endswith("yes")
    assert all(len(line) <= 80 for line in lines)


def test_precision_plan_from_pilot_summary():
    spec = parse_spec(
        {
            "name": "x",
            "transports": ["rest"],
            "blocks": 3,
            "load": {"duration_s": 2, "warmup_s": 1, "precision_ms": 0.02, "max_blocks": 10},
        }
    )
    summary = {
        "rest": {"by_arm": {"with": {"block_diffs_ms": {"mean": [0.3, 0.35, 0.4], "p50": [0.3, 0.3, 0.3]}}}}
    }
    assert precision_run.pilot_series(spec, summary) == {
        "rest/with/mean": [0.3, 0.35, 0.4],
        "rest/with/p50": [0.3, 0.3, 0.3],
    }
    plan = precision_run.plan_for(spec, summary)
    # s0 = 0.05, t(0.975, 2) = 4.303: (4.303 * 0.05 / 0.02)^2 = 115.7 -> capped at 10
    assert (plan.n_blocks, plan.needed, plan.limited_by) == (10, 116, "max_blocks")
    rec = precision_run.record(plan, spec)
    assert rec["workflows"] == 2 and "afresh" in rec["deployments"] and "max_blocks" in rec["line"]
    ext = precision_run.extension_spec(spec, 7)
    assert ext.blocks == 7 and ext.load.precision_ms is None and ext.order_seed == spec.order_seed + 1
    assert spec.floor and not ext.floor  # the pilot's floor is the run's
    assert block_seconds(spec) == 1 + 2 * 2 + 1


def test_precision_plan_with_replicates_sizes_in_replicates():
    spec = parse_spec(
        {
            "name": "x",
            "transports": ["rest"],
            "blocks": 6,
            "replicates": 3,
            "load": {"duration_s": 2, "warmup_s": 1, "precision_ms": 0.1, "max_blocks": 11},
        }
    )
    # blocks 0-5 in replicates of 2 (block 3 not measured in both arms: its replicate has one block)
    diffs = {"mean": [0.2, 0.4, 0.5, 0.6, 0.7, 0.5], "p50": [0.3, 0.3, 0.3, 0.3, 0.3, 0.3]}
    ids = [0, 1, 2, 4, 5, 6]
    summary = {"rest": {"by_arm": {"with": {"block_diffs_ms": diffs, "block_ids": ids}}}}
    series = precision_run.pilot_series(spec, summary)
    assert series["rest/with/mean"] == pytest.approx([0.3, 0.5, 0.65, 0.5])
    assert series["rest/with/p50"] == pytest.approx([0.3, 0.3, 0.3, 0.3])
    summary["rest"]["by_arm"]["with"]["block_ids"] = list(range(6))
    plan = precision_run.plan_for(spec, summary)
    # replicate means 0.3, 0.55, 0.6: s0 = 0.1607, (4.303 * 0.1607 / 0.1)^2 = 47.8 -> 48 replicates,
    # capped at 11 // 2 = 5 replicates = 10 blocks
    assert (plan.n_blocks, plan.needed, plan.pilot_blocks, plan.limited_by) == (10, 96, 6, "max_blocks")
    rec = precision_run.record(plan, spec)
    assert (rec["unit"], rec["blocks_per_unit"], rec["pilot_units"], rec["n_units"]) == ("replicate", 2, 3, 5)
    assert "replicates" in rec["deployments"]
    ext = precision_run.extension_spec(spec, 4)
    assert (ext.blocks, ext.replicates) == (4, 2)
    with pytest.raises(ValueError, match="not whole replicates"):
        precision_run.extension_spec(spec, 3)


def _spec_file(tmp_path, **extra):
    ports = []
    while len(set(ports)) < 4:
        ports.append(free_port())
    p_with, p_without, p_model, p_aa = sorted(set(ports))
    spec = {
        "name": "tiny",
        "platform": "local",
        "transports": ["rest"],
        "load": {"tool": "k6", "workers": 1, "duration_s": 2, "warmup_s": 1},
        "blocks": 3,
        "floor": False,  # not about the floor: its step adds 8-17 s to a run
        "local": {"ports": {"with": p_with, "without": p_without, "model_behind_orchestrator": p_model}},
        **extra,
    }
    if "arms" in spec:
        spec["arms"][-1]["port"] = p_aa
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_aa_arm_is_measured_end_to_end(tmp_path):
    arms = [{"name": "without", "baseline": True}, {"name": "with"}, {"name": "aa", "aa": True}]
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(_spec_file(tmp_path, arms=arms)), "--out", str(out), timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aa_arm"] == "aa"
    res = summary["rest"]
    band = res["by_arm"]["aa"]["overhead_ms"]["mean"]
    assert band["n_blocks"] == 3 and band["ci95"][0] < band["ci95"][1]
    assert res["by_arm"]["aa"]["aa_control"] is True
    assert isinstance(res["within_aa_noise"]["with"], bool)
    assert "within_aa_noise" in res["by_arm"]["with"]["aa_noise"]
    # a second model process of its own (not the baseline's endpoint under another name)
    rec = json.loads((out / "state" / "deploy" / "rest-aa.json").read_text())
    assert rec["details"]["processes"], rec
    # plain lines (stderr is no terminal): one per finished block with the running estimate
    blocks = [line for line in proc.stderr.splitlines() if line.startswith("[orchbench] block ")]
    assert len(blocks) == 3 and "rest aa: mean" in blocks[-1], proc.stderr[-2000:]
    assert "A/A band (aa)" in proc.stdout
    assert "A/A" in (out / "report.html").read_text()


@pytest.mark.slow
def test_precision_run_adds_a_second_workflow(tmp_path):
    out = tmp_path / "out"
    load = {
        "tool": "k6",
        "workers": 1,
        "duration_s": 2,
        "warmup_s": 1,
        "precision_ms": 0.0001,
        "max_blocks": 4,
    }
    # one block per deployment replicate (the default spec's layout): the pilot is 3 replicates, the
    # extension one more, and the interval is over the 4 replicates, Stein's from the pilot's 3
    spec = _spec_file(tmp_path, load=load, replicates=3)
    proc = orchbench("run", "--spec", str(spec), "--out", str(out), timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    run = summary["precision_run"]
    assert (run["pilot_blocks"], run["n_blocks"], run["limited_by"], run["workflows"]) == (
        3,
        4,
        "max_blocks",
        2,
    )
    assert (run["unit"], run["pilot_units"], run["n_units"]) == ("replicate", 3, 4)
    mean = summary["rest"]["overhead_ms"]["mean"]
    assert mean["n_blocks"] == 4 and mean["df"] == 2  # 4 replicates, Stein's df from the pilot's 3
    assert summary["rest"]["replicates"] == {"count": 4, "blocks": [1, 1, 1, 1]}
    assert "Stein's interval over replicates" in summary["rest"]["method"]
    assert len(summary["block_order"]) == 4
    assert (out / "pilot-summary.json").exists() and (out / "extension" / "workflow.yaml").exists()
    assert "N limited by load.max_blocks" in proc.stderr
    assert "precision not reached" in summary["rest"]["precision"]["line"]


def test_the_largest_extension_a_budget_allows_is_a_valid_spec():
    """max_blocks is capped like blocks (100), and replicates as high: the extension's spec of a
    pilot of 3 one-block replicates within max_blocks 100 (97 more replicates) loads."""
    spec = parse_spec(
        {
            "name": "x",
            "blocks": 3,
            "replicates": 3,
            "load": {"duration_s": 2, "warmup_s": 1, "precision_ms": 0.001, "max_blocks": 100},
        }
    )
    ext = precision_run.extension_spec(spec, 97)
    assert (ext.blocks, ext.replicates) == (97, 97)
    with pytest.raises(ConfigError):
        parse_spec({"name": "x", "blocks": 3, "load": {"precision_ms": 0.1, "max_blocks": 101}})
