"""`orchbench run` end to end on a tiny spec: the compiled workflow, run locally, gives the answer."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import yaml

from orchbench.cli.run_cmd import compiled
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools import cpu_wake
from orchbench.core.loadtools.cpu_wake import QOS_PATH
from orchbench.core.spec import load_spec
from pipelines.local_runner import LocalRunner, StepFailed
from results_schema import load_summary, read_table
from steps.compare import FLOOR_OFF_NOTE
from tests.helpers import ROOT, alive, orchbench
from tests.pipeline_specs import tiny_spec


@pytest.mark.slow
def test_run_produces_raw_parquet_summary_report(tmp_path):
    spec_path = tiny_spec(tmp_path, floor=True)  # the one full run of `make test` that measures the floor
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(spec_path), "--out", str(out), timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for transport in ("rest", "grpc"):
        for metric in ("mean", "p50"):
            est = summary[transport]["overhead_ms"][metric]
            lo, hi = est["ci95"]
            assert lo <= est["estimate"] <= hi
        assert summary[transport]["arms"]["with"]["verified"]
        assert summary[transport]["n"]["with"] > 50 and summary[transport]["n"]["without"] > 50
    assert summary["floor"]["k6"]["rest"]["p50_ms"] > 0
    assert summary["model_latency_ms"]["p50_ms"] > 0
    assert summary["floor_measured"] is True and "floor_note" not in summary
    assert "measurement floor (k6 against a no-op rest server)" in proc.stdout
    # every compiled load task left its raw tool JSON in the run directory
    wf = yaml.safe_load((out / "workflow.yaml").read_text())
    dag = next(t for t in wf["spec"]["templates"] if t["name"] == "benchmark")["dag"]["tasks"]
    load_tasks = sorted(t["name"] for t in dag if t["name"].startswith("load-"))
    assert sorted(p.name for p in (out / "raw").iterdir()) == load_tasks
    assert len(load_tasks) == 2 * 2  # interleave request (k6's default): one paired task per block
    for task in load_tasks:
        for arm in ("with", "without"):
            meta = json.loads((out / "raw" / task / arm / "meta.json").read_text())
            assert meta["arm"] == arm and meta["interleave"] == "request"
            assert load_summary(out / "raw" / task / arm / meta["raw"]).requests > 0
            if os.access(QOS_PATH, os.W_OK):
                assert meta["cpu_wake"] == {"held": True, "latency_us": 0}
            else:
                assert not meta["cpu_wake"]["held"] and "cannot open" in meta["cpu_wake"]["reason"]
    assert summary["interleave"] == "request"
    # the spec's default: CPUs kept awake in every load test where the kernel lets orchbench (root)
    wake = summary["cpu_wake"]
    assert wake["load_tests"] == 2 * len(load_tasks)
    assert wake["held"] == (wake["load_tests"] if os.access(QOS_PATH, os.W_OK) else 0)
    assert cpu_wake.line(wake) in proc.stdout
    assert summary["floor"]["cpu_wake"]["held"] == os.access(QOS_PATH, os.W_OK)
    runs = read_table(out / "results.parquet", "runs").to_pandas()
    samples = read_table(out / "samples.parquet", "samples").to_pandas()
    assert len(runs) == 2 * len(load_tasks) == 2 * 2 * 2
    assert set(runs["arm"]) == {"with", "without"} and runs["arm_verified"].all()
    # each block's measured window, from its samples (k6's summary has no timestamps)
    assert runs["started_at"].notna().all() and (runs["started_at"] < runs["ended_at"]).all()
    # interleaved request by request: in every block the two arms' windows overlap
    windows = runs.groupby(["transport", "block"]).agg(
        last_start=("started_at", "max"), first_end=("ended_at", "min")
    )
    assert (windows["last_start"] < windows["first_end"]).all(), windows
    # the runs' request counts are the tool's own and equal the stored samples
    counts = samples.groupby(["transport", "arm", "block"]).size()
    for row in runs.itertuples():
        assert counts[(row.transport, row.arm, row.block)] == row.requests
    assert (out / "report.html").stat().st_size > 10_000
    assert "orchestrator overhead" in proc.stdout
    assert not (out / "state" / "cpu_plan.json").exists(), "untaint did not run"


@pytest.mark.slow
@pytest.mark.parametrize("interleave", ["block", "request"])
def test_local_runner_runs_exactly_the_compiled_workflow(tmp_path, interleave):
    """Wire one load-test block to the other arm's endpoint in the compiled dict: the run refuses it."""
    spec = load_spec(tiny_spec(tmp_path, transports=("rest",), blocks=1, duration_s=1, interleave=interleave))
    wf = compiled(spec, "workflow")
    dag = next(t for t in wf["spec"]["templates"] if t["name"] == "benchmark")["dag"]["tasks"]
    name, key = ("load-rest-b0-with", "endpoint") if interleave == "block" else ("load-rest-b0", "endpoints")
    task = next(t for t in dag if t["name"] == name)
    param = next(p for p in task["arguments"]["parameters"] if p["name"] == key)
    with_ref = "{{tasks.wait-rest-with.outputs.parameters.endpoint}}"
    without_ref = "{{tasks.wait-rest-without.outputs.parameters.endpoint}}"
    if interleave == "block":
        assert param["value"] == with_ref
    else:  # one JSON list of every arm's endpoint, in the block's drawn order
        assert sorted(param["value"].strip("[]").split(",")) == sorted([with_ref, without_ref])
    param["value"] = param["value"].replace(with_ref, without_ref)
    out = tmp_path / "out"
    runner = LocalRunner(wf, out, parameters={"state-dir": str(out / "state"), "results-dir": str(out)})
    expected = "wired to the rest/without endpoint" if interleave == "block" else "is wired to arms"
    with pytest.raises(StepFailed, match=expected):
        runner.run()
    assert runner.status == "Failed"
    assert "cleanup" in runner.tasks  # the exit handler ran
    for rec in (out / "state" / "deploy").glob("*.json"):
        pids = [p["pid"] for p in json.loads(rec.read_text())["details"]["processes"]]
        assert pids and not [pid for pid in pids if alive(pid)]


def test_run_refuses_cluster_spec():
    with pytest.raises(ConfigError, match="runs locally"):
        from orchbench.cli.run_cmd import run_local
        from tests.helpers import ROOT

        run_local(ROOT / "specs" / "seed.yaml", None)


@pytest.mark.slow
def test_compiled_workflow_of_a_users_spec_runs_from_another_folder(tmp_path, monkeypatch):
    """A spec in its own folder with its own payloads (relative paths), compiled, then run by the
    local runner from an unrelated working directory after the spec's folder is gone: the workflow
    carries the manifest and payloads itself."""
    project = tmp_path / "project"
    (project / "bodies").mkdir(parents=True)
    body = (ROOT / "payloads" / "flowers.json").read_bytes()
    (project / "bodies" / "req.json").write_bytes(body)
    spec_path = tiny_spec(
        project, transports=("rest",), blocks=1, duration_s=1, warmup_s=0, cpu_pinning=False
    )
    data = yaml.safe_load(spec_path.read_text())
    data["payloads"] = {"rest": "bodies/req.json"}
    spec_path.write_text(yaml.safe_dump(data))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    wf = compiled(load_spec(spec_path), "workflow")
    shutil.rmtree(project)
    out = tmp_path / "out"
    runner = LocalRunner(wf, out, parameters={"state-dir": str(out / "state"), "results-dir": str(out)})
    runner.run()
    assert runner.status == "Succeeded"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rest"]["n"]["with"] > 0 and summary["rest"]["n"]["without"] > 0
    # tiny_spec switches the floor off: no floor task ran, and summary and report say it was switched off
    assert "floor" not in runner.tasks and not (out / "tasks" / "floor").exists()
    assert summary["floor"] is None and summary["floor_measured"] is False
    assert summary["floor_note"] == FLOOR_OFF_NOTE
    assert "not measured: switched off in the spec (floor: false)" in (out / "report.html").read_text()
    metas = [json.loads(p.read_text()) for p in (out / "tasks").rglob("meta.json")]
    assert metas and {m["payload"] for m in metas} == {"req.json"}
    assert {m["payload_sha256"] for m in metas} == {hashlib.sha256(body).hexdigest()}


@pytest.mark.slow
@pytest.mark.skipif(
    not all(
        __import__("orchbench.core.platform.proxies", fromlist=["available"]).available(k)
        for k in ("nginx", "haproxy")
    ),
    reason="nginx and haproxy are needed: apt-get install nginx haproxy",
)
def test_proxies_spec_tiny_all_four_arms_interleaved(tmp_path):
    """specs/proxies.yaml, tiny: the model server direct, the reference orchestrator, nginx and
    HAProxy, all measured, each verified by its header, their measured windows overlapping in every
    block, one overheads row per transport x compared arm x metric."""
    data = yaml.safe_load((ROOT / "specs" / "proxies.yaml").read_text())
    data.update(blocks=2, load={**data["load"], "duration_s": 1, "warmup_s": 0}, floor=False)
    data["manifest"] = str(ROOT / "manifests" / "tf_flowers.yaml")
    data["payloads"] = {
        t: str(ROOT / "payloads" / f"flowers.{e}") for t, e in (("rest", "json"), ("grpc", "bin"))
    }
    spec_path = tmp_path / "proxies-tiny.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(spec_path), "--out", str(out), timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    arms = ["direct", "orchestrator", "nginx", "haproxy"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["baseline"] == "direct" and summary["compared_arms"] == arms[1:]
    for transport in ("rest", "grpc"):
        by_arm = summary[transport]["by_arm"]
        assert sorted(by_arm) == sorted(arms[1:])  # summary.json sorts keys; `compared_arms` keeps the order
        for arm, res in by_arm.items():
            assert res["baseline"] == "direct" and res["overhead_ms"]["p50"]["estimate"] is not None
            assert res["arms"][arm]["verified"] and res["arms"]["direct"]["verified"]
    runs = read_table(out / "results.parquet", "runs").to_pandas()
    assert set(runs["arm"]) == set(arms) and runs["arm_verified"].all()
    windows = runs.groupby(["transport", "block"]).agg(
        last_start=("started_at", "max"), first_end=("ended_at", "min"), arms=("arm", "nunique")
    )
    assert (windows["arms"] == 4).all() and (windows["last_start"] < windows["first_end"]).all(), windows
    over = read_table(out / "overheads.parquet", "overheads").to_pandas()
    assert len(over) == 2 * 3 * over["metric"].nunique()
    assert set(over["arm"]) == set(arms[1:]) and set(over["baseline"]) == {"direct"}
    assert over["n_blocks"].eq(2).all() and over["se_ms"].notna().all()
    hows = " ".join(str(h) for h in runs["arm_evidence"])
    assert "x-orchbench-hop=nginx" in hows and "x-orchbench-hop=haproxy" in hows
    # `floor: false`: the terminal says the floor was switched off rather than saying nothing
    assert "not measured: switched off in the spec (floor: false)" in proc.stdout
    assert "measurement floor (k6" not in proc.stdout
    assert not (out / "state" / "cpu_plan.json").exists(), "untaint did not run"
