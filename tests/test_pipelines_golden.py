"""Each pipeline variant against its golden YAML (normalised dicts), and against Argo's own schema.

Regenerate the golden files with `make golden` (ORCHBENCH_REGEN_GOLDEN=1), then review the diff.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import yaml

from orchbench.core.spec import Spec, load_spec
from pipelines.benchmark import KINDS, compile_dict
from tests.helpers import ROOT

GOLDEN = ROOT / "pipelines" / "golden"
ARGO_SCHEMA = ROOT.parent / "shared" / "argo" / "workflow-schema-v4.1.json"
CASES = [(spec, kind) for spec in ("default", "seed", "kserve", "seldon2") for kind in KINDS]


def _normalise(d):
    """Sort keys and decode the JSON `spec` parameter so diffs are readable and order-free."""
    d = json.loads(json.dumps(d, sort_keys=True))
    for p in (
        d["spec"].get("arguments", {}).get("parameters", [])
        or d["spec"]["workflowSpec"]["arguments"]["parameters"]
    ):
        if p["name"] == "spec":
            p["value"] = json.loads(p["value"])
    return d


def _compiled(spec: str, kind: str) -> dict:
    return compile_dict(load_spec(ROOT / "specs" / f"{spec}.yaml"), kind)


@pytest.mark.parametrize(("spec", "kind"), CASES)
def test_matches_golden(spec, kind):
    path = GOLDEN / f"{spec}-{kind}.yaml"
    got = _compiled(spec, kind)
    if os.environ.get("ORCHBENCH_REGEN_GOLDEN") == "1":
        path.write_text(yaml.safe_dump(got, sort_keys=False, width=120))
    assert path.exists(), f"no golden file {path}: run `make golden`"
    assert _normalise(got) == _normalise(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(("spec", "kind"), CASES)
def test_validates_against_hera_models(spec, kind):
    from hera.workflows.models import CronWorkflow, Workflow, WorkflowTemplate

    model = {"workflow": Workflow, "template": WorkflowTemplate, "cron": CronWorkflow}[kind]
    d = _compiled(spec, kind)
    parsed = model.model_validate(d)
    assert parsed.kind == d["kind"]
    # round trip through the model loses nothing
    assert json.loads(parsed.model_dump_json(exclude_none=True, by_alias=True)) == json.loads(json.dumps(d))


@pytest.mark.skipif(not ARGO_SCHEMA.exists(), reason=f"Argo JSON schema not found at {ARGO_SCHEMA}")
@pytest.mark.parametrize(("spec", "kind"), CASES)
def test_validates_against_argo_json_schema(spec, kind):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(ARGO_SCHEMA.read_text())
    name = {"workflow": "Workflow", "template": "WorkflowTemplate", "cron": "CronWorkflow"}[kind]
    sub = {
        "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{name}",
        "definitions": schema["definitions"],
    }
    jsonschema.Draft202012Validator(sub).validate(_compiled(spec, kind))


def test_schema_check_can_fail():
    """The schema really constrains: a template with a bogus field type is rejected."""
    jsonschema = pytest.importorskip("jsonschema")
    if not ARGO_SCHEMA.exists():
        pytest.skip("Argo JSON schema not present")
    schema = json.loads(ARGO_SCHEMA.read_text())
    sub = {
        "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.Workflow",
        "definitions": schema["definitions"],
    }
    bad = _compiled("default", "workflow")
    bad["spec"]["templates"][0]["script"]["args"] = "not-a-list"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(sub).validate(bad)


def _dag_tasks(d: dict) -> list[dict]:
    spec_ = d["spec"].get("workflowSpec", d["spec"])
    return next(t for t in spec_["templates"] if t["name"] == "benchmark")["dag"]["tasks"]


def _default_one_deployment() -> Spec:
    """The local default laid out as one deployment (no replicates): the DAG shape of a plain run."""
    from orchbench.core.spec import parse_spec

    data = yaml.safe_load((ROOT / "specs" / "default.yaml").read_text())
    data.pop("replicates", None)
    spec = parse_spec(data)
    spec._base_dir = ROOT / "specs"
    return spec


def test_the_default_deploys_every_arm_afresh_for_every_block():
    """specs/default.yaml: one block per deployment replicate, each replicate deploying both arms,
    its block waiting for them, and torn down before the next replicate starts."""
    spec = load_spec(ROOT / "specs" / "default.yaml")
    assert spec.replicates == spec.blocks
    dag = {t["name"]: t for t in _dag_tasks(_compiled("default", "workflow"))}
    for tr in spec.transports:
        for b in range(spec.blocks):
            assert {f"deploy-{tr}-without-r{b}", f"deploy-{tr}-with-r{b}"} <= set(dag)
            deps = dag[f"load-{tr}-b{b}"]["depends"]
            assert f"wait-{tr}-with-r{b}" in deps and f"wait-{tr}-without-r{b}" in deps
            if b:
                assert f"teardown-{tr}-with-r{b - 1}" in dag[f"deploy-{tr}-without-r{b}"]["depends"]


def test_dag_shape_pairs_arms_per_block_and_cleans_up_on_exit():
    """The local default (k6): one interleaved task per block, its endpoints in the block's drawn order."""
    spec = _default_one_deployment()
    d = compile_dict(spec, "workflow")
    assert spec.interleave() == "request"
    dag = _dag_tasks(d)
    names = [t["name"] for t in dag]
    loads = [t for t in dag if t["name"].startswith("load-rest-")]
    assert [t["name"] for t in loads] == [f"load-rest-b{b}" for b in range(spec.blocks)]
    for t, arms in zip(loads, spec.block_order(), strict=True):
        args = {p["name"]: p["value"] for p in t["arguments"]["parameters"]}
        assert t["template"] == "loadtest-arms"
        wired = ",".join(f"{{{{tasks.wait-rest-{a}.outputs.parameters.endpoint}}}}" for a in arms)
        assert args["endpoints"] == f"[{wired}]"
    assert {a[0] for a in spec.block_order()} == {"with", "without"}  # both arms get to go first
    chain = {t["name"]: t.get("depends") for t in dag}
    for prev, nxt in itertools.pairwise([t["name"] for t in loads]):
        assert chain[nxt] == prev
    assert d["spec"]["onExit"] == "exit-handler"
    exit_tasks = next(t for t in d["spec"]["templates"] if t["name"] == "exit-handler")["dag"]["tasks"]
    assert [t["template"] for t in exit_tasks] == ["cleanup"]
    compare = next(t for t in dag if t["name"] == "compare")
    froms = {a["from"] for a in compare["arguments"]["artifacts"]}
    assert {f"{{{{tasks.{n}.outputs.artifacts.raw}}}}" for n in names if n.startswith("load-")} <= froms


def test_dag_shape_interleaves_arm_runs_in_block_mode():
    """The seed on a cluster (vegeta / ghz): one task per block and arm, in the recorded random order."""
    d = _compiled("seed", "workflow")
    spec = load_spec(ROOT / "specs" / "seed.yaml")
    assert spec.interleave() == "block"
    dag = _dag_tasks(d)
    loads = [t["name"] for t in dag if t["name"].startswith("load-rest-")]
    expected = [f"load-rest-b{b}-{arm}" for b, arms in enumerate(spec.block_order()) for arm in arms]
    assert loads == expected
    chain = {t["name"]: t.get("depends") for t in dag}
    for prev, nxt in itertools.pairwise(expected):
        assert chain[nxt] == prev
    assert {tuple(sorted(a)) for a in spec.block_order()} == {("with", "without")}


def test_cron_has_schedule_and_gate_last():
    d = _compiled("seed", "cron")
    assert d["kind"] == "CronWorkflow"
    assert d["spec"]["schedules"] == ["0 2 * * *"] and d["spec"]["concurrencyPolicy"] == "Forbid"
    dag = next(t for t in d["spec"]["workflowSpec"]["templates"] if t["name"] == "benchmark")["dag"]["tasks"]
    assert dag[-1]["name"] == "gate" and dag[-1]["depends"] == "report"


def test_cluster_loadtest_pods_tolerate_and_select_loadtester_node():
    d = _compiled("seed", "workflow")
    tpl = {t["name"]: t for t in d["spec"]["templates"]}
    assert tpl["loadtest"]["nodeSelector"] == {"orchbench.io/role": "loadtester"}
    assert any(t["key"] == "loadtester" for t in tpl["loadtest"]["tolerations"])
    assert not any(t["key"] == "model" for t in tpl["loadtest"]["tolerations"])
    assert any(t["key"] == "loadtester" for t in tpl["cleanup"]["tolerations"])


def test_golden_files_exist_for_every_case():
    assert {f"{s}-{k}.yaml" for s, k in CASES} <= {p.name for p in Path(GOLDEN).glob("*.yaml")}


def test_arms_list_compiles_one_deploy_wait_per_arm_and_one_load_task_with_all_endpoints(tmp_path):
    """Four local arms: the baseline deployed first, every other arm after the previous one's wait,
    each block's task given all four endpoints in an order drawn from order_seed."""
    from orchbench.core.spec import parse_spec

    data = yaml.safe_load((ROOT / "specs" / "default.yaml").read_text())
    data.pop("replicates", None)  # one deployment: task names without a replicate suffix
    data["arms"] = [
        {"name": "direct", "baseline": True, "hop": "model"},
        {"name": "orch", "hop": "orchestrator"},
        {"name": "nginx", "hop": "nginx"},
        {"name": "haproxy", "hop": "haproxy"},
    ]
    spec = parse_spec(data)
    spec._base_dir = ROOT / "specs"
    d = compile_dict(spec, "workflow")
    dag = {t["name"]: t for t in _dag_tasks(d)}
    order = ["direct", "orch", "nginx", "haproxy"]
    for tr in ("rest", "grpc"):
        deps = [dag[f"deploy-{tr}-{a}"].get("depends") for a in order]
        assert deps[1:] == [f"wait-{tr}-{a}" for a in order[:-1]]
        assert dag[f"load-{tr}-b0"]["depends"] == " && ".join(
            f"wait-{tr}-{a}" for a in [*order[1:], "direct"]
        )
    for b, arms in enumerate(spec.block_order()):
        args = {p["name"]: p["value"] for p in dag[f"load-rest-b{b}"]["arguments"]["parameters"]}
        assert (
            args["endpoints"]
            == "[" + ",".join(f"{{{{tasks.wait-rest-{a}.outputs.parameters.endpoint}}}}" for a in arms) + "]"
        )
        assert sorted(arms) == sorted(order)
    assert len({tuple(a) for a in spec.block_order()}) > 1
