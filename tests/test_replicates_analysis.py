"""Deployment replicates through the analysis: the interval is over replicates (literal figures)."""

from __future__ import annotations

import numpy as np
import pytest

from orchbench.core.analysis import overheads
from orchbench.core.errors import ConfigError
from orchbench.core.spec import parse_spec


def _blocks(
    offsets_ms: list[float], n: int = 200, seed: int = 3
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per block: the baseline's latencies ~10 ms, the arm's the same requests shifted by the block's
    offset (so every metric's per-block difference is exactly that offset)."""
    rng = np.random.default_rng(seed)
    base = [rng.normal(10e6, 1e6, n) for _ in offsets_ms]
    return [b + off * 1e6 for b, off in zip(base, offsets_ms, strict=True)], base


def test_interval_is_over_replicate_means():
    # replicate 0: +0.2, +0.2 ms; replicate 1: +0.4, +0.4; replicate 2: +0.6, +0.6
    with_g, without_g = _blocks([0.2, 0.2, 0.4, 0.4, 0.6, 0.6])
    res = overheads(with_g, without_g, replicates=[0, 0, 1, 1, 2, 2])
    p50 = res["overhead_ms"]["p50"]
    half = 4.302652729911275 * 0.2 / np.sqrt(3)  # t(0.975, 2) x SD of (0.2, 0.4, 0.6) / sqrt(3)
    assert p50["estimate"] == pytest.approx(0.4, abs=1e-6)
    assert p50["ci95"] == pytest.approx([0.4 - half, 0.4 + half], abs=1e-6)
    assert p50["df"] == 2 and p50["n_blocks"] == 3
    assert res["replicates"] == {"count": 3, "blocks": [2, 2, 2]}
    assert res["paired_test"]["p50"]["unit"] == "deployment replicate"
    assert res["paired_test"]["p50"]["n_blocks"] == 3  # the units the test rests on: replicates
    # the same blocks as one deployment: the interval over 6 blocks is narrower (df 5)
    flat = overheads(with_g, without_g)["overhead_ms"]["p50"]
    assert flat["df"] == 5 and (flat["ci95"][1] - flat["ci95"][0]) < (p50["ci95"][1] - p50["ci95"][0])


def test_one_replicate_is_the_ordinary_run():
    with_g, without_g = _blocks([0.3, 0.35, 0.25])
    assert overheads(with_g, without_g, replicates=[0, 0, 0]) == overheads(with_g, without_g)


def test_the_spec_splits_blocks_into_replicates():
    spec = parse_spec({"name": "x", "blocks": 6, "replicates": 3})
    assert [spec.replicate_of(b) for b in range(6)] == [0, 0, 1, 1, 2, 2]
    assert "replicates" not in parse_spec({"name": "x"}).to_json_dict()  # older specs dump as before
    with pytest.raises(ConfigError, match="5 blocks do not split into 3 replicates evenly"):
        parse_spec({"name": "x", "blocks": 5, "replicates": 3})
    # a precision target sizes the run in replicates: Stein's rule needs a pilot of >= 3 of them
    with pytest.raises(ConfigError, match=r"replicates: 2; with load\.precision_ms .* at least 3"):
        parse_spec({"name": "x", "blocks": 6, "replicates": 2, "load": {"precision_ms": 0.05}})
    sized = parse_spec({"name": "x", "blocks": 6, "replicates": 3, "load": {"precision_ms": 0.05}})
    assert sized.replicates == 3 and sized.load.precision_ms == 0.05


def test_a_pilot_sized_replicated_run_gives_the_sized_figures_steins_interval():
    # replicates of 2 blocks: the pilot's 3 means 0.2, 0.4, 0.6 (SD 0.2), then 2 more: 0.4, 0.4
    with_g, without_g = _blocks([0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4])
    reps = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    res = overheads(with_g, without_g, pilot_blocks=6, replicates=reps, pilot_replicates=3)
    mean, p90 = res["overhead_ms"]["mean"], res["overhead_ms"]["p90"]
    half = 4.302652729911275 * 0.2 / np.sqrt(5)  # t(0.975, R0 - 1 = 2) x s0 / sqrt(R = 5)
    assert mean["estimate"] == pytest.approx(0.4, abs=1e-6)
    assert mean["ci95"] == pytest.approx([0.4 - half, 0.4 + half], abs=1e-6)
    assert mean["df"] == 2 and mean["n_blocks"] == 5
    # p90 was not sized on: the t-interval over the 5 replicate means (SD sqrt(0.02)), df 4
    half90 = 2.7764451051977987 * np.sqrt(0.02) / np.sqrt(5)
    assert p90["ci95"] == pytest.approx([0.4 - half90, 0.4 + half90], abs=1e-6) and p90["df"] == 4
    assert "Stein's interval over replicates from the 3-replicate pilot" in res["method"]


def test_compiled_replicates_deploy_every_arm_afresh_in_turn():
    from orchbench.core.spec import load_spec
    from pipelines.benchmark import compile_dict

    spec = load_spec("specs/default.yaml").model_copy(update={"replicates": 3})
    wf = compile_dict(spec, "workflow")
    dag = next(t for t in wf["spec"]["templates"] if t["name"] == "benchmark")["dag"]["tasks"]
    deps = {t["name"]: t.get("depends", "") for t in dag}
    assert [n for n in deps if n.startswith("deploy-rest-without")] == [
        f"deploy-rest-without-r{r}" for r in range(3)
    ]
    # replicate 1 starts after replicate 0 is torn down, and its blocks after its own arms are ready
    assert "teardown-rest-with-r0" in deps["deploy-rest-without-r1"]
    assert "teardown-rest-without-r0" in deps["deploy-rest-without-r1"]
    assert "wait-rest-with-r1" in deps["load-rest-b2"] and "r0" not in deps["load-rest-b2"]
    assert "load-rest-b3" in deps["teardown-rest-with-r1"]


def test_odd_replicates_start_the_aa_copy_before_the_baseline():
    """calibrate's A/A run (the baseline and its copy, 4 replicates): replicates 0 and 2 start the
    baseline first, 1 and 3 the copy; the compiled DAG chains the deploys in that order. Without an
    A/A arm every replicate starts the baseline first (the hops front its model)."""
    from orchbench.cli.calibrate import aa_arms, aa_layout
    from orchbench.core.spec import load_spec
    from pipelines.benchmark import compile_dict

    cal = load_spec("specs/calibrate.yaml")
    copies = aa_arms(cal)
    assert copies is not None
    spec = cal.with_overrides({"arms": copies, "local.inject_delay_ms": 0.0} | aa_layout(cal.blocks))
    assert [spec.deploy_order(r) for r in range(4)] == [["without", "aa"], ["aa", "without"]] * 2
    plain = load_spec("specs/proxies.yaml")
    assert plain.aa_arm() is None
    assert plain.deploy_order(1) == plain.arm_names() == ["direct", "orchestrator", "nginx", "haproxy"]
    dag = next(t for t in compile_dict(spec, "workflow")["spec"]["templates"] if t["name"] == "benchmark")
    deps = {t["name"]: t.get("depends", "") for t in dag["dag"]["tasks"]}
    assert "wait-rest-without-r0" in deps["deploy-rest-aa-r0"]
    assert "teardown-rest-without-r0" in deps["deploy-rest-aa-r1"]  # the copy opens replicate 1
    assert "wait-rest-aa-r1" in deps["deploy-rest-without-r1"]
    assert "wait-rest-without-r2" in deps["deploy-rest-aa-r2"]


@pytest.mark.slow
def test_local_run_with_two_replicates_starts_new_processes(tmp_path):
    """A tiny local run, REST, 2 replicates of 1 block: each replicate's arms are new processes (new
    pids), and the interval rests on the 2 replicates."""
    import json

    import yaml

    from tests.helpers import orchbench
    from tests.pipeline_specs import tiny_spec

    path = tiny_spec(tmp_path, transports=("rest",), blocks=2, duration_s=1)
    data = yaml.safe_load(path.read_text())
    data["replicates"] = 2
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(path), "--out", str(out), "--quiet", timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pids = {}
    for r in (0, 1):
        for arm in ("with", "without"):
            rec = json.loads(
                (
                    out / "tasks" / f"deploy-rest-{arm}-r{r}" / "hera-outputs" / "parameters" / "record"
                ).read_text()
            )
            pids[(arm, r)] = {p["pid"] for p in rec["details"]["processes"]}
    assert pids[("without", 0)] and pids[("with", 0)]
    assert pids[("without", 0)].isdisjoint(pids[("without", 1)])
    assert pids[("with", 0)].isdisjoint(pids[("with", 1)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicates"] == 2
    assert summary["rest"]["replicates"] == {"count": 2, "blocks": [1, 1]}
    assert (
        summary["rest"]["overhead_ms"]["p50"]["n_blocks"] == 2
        and summary["rest"]["overhead_ms"]["p50"]["df"] == 1
    )
