"""`floor: false`: the compiled workflow has no floor step (every kind, every platform) and is still a
valid Argo object; left at its default the key changes no compiled workflow; summary.json, the
report and the terminal say the floor was switched off rather than missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchbench.core.errors import ConfigError
from orchbench.core.report import build_report
from orchbench.core.spec import Spec, load_spec, parse_spec
from pipelines.benchmark import KINDS, compile_dict
from pipelines.local_runner import parse_depends
from pipelines.templates import Kind
from steps.compare import FLOOR_OFF_NOTE, floor_record
from tests.helpers import ROOT
from tests.run_fixtures import make_run_dir

ARGO_SCHEMA = ROOT.parent / "shared" / "argo" / "workflow-schema-v4.1.json"
CASES = [(spec, kind) for spec in ("default", "seed", "kserve", "seldon2") for kind in KINDS]
ARGO_KIND = {"workflow": "Workflow", "template": "WorkflowTemplate", "cron": "CronWorkflow"}


def _spec(name: str, **overrides: Any) -> Spec:
    spec = load_spec(ROOT / "specs" / f"{name}.yaml")
    return spec.with_overrides(overrides) if overrides else spec


def _workflow_spec(d: dict[str, Any]) -> dict[str, Any]:
    return d["spec"].get("workflowSpec", d["spec"])


def _dag(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tpl = next(t for t in _workflow_spec(d)["templates"] if t["name"] == "benchmark")
    return {t["name"]: t for t in tpl["dag"]["tasks"]}


def _carried_spec(d: dict[str, Any]) -> dict[str, Any]:
    params = _workflow_spec(d)["arguments"]["parameters"]
    return json.loads(next(p["value"] for p in params if p["name"] == "spec"))


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_without_the_floor_the_dag_has_no_floor_task_and_taint_leads_to_the_first_deploy(
    name: str, kind: Kind
) -> None:
    spec = _spec(name, floor=False)
    d = compile_dict(spec, kind)
    dag = _dag(d)
    assert "floor" not in dag
    assert "floor" not in {t["name"] for t in _workflow_spec(d)["templates"]}
    suffix = "-r0" if spec.replicates > 1 else ""  # the default's deployments are replicates
    first = f"deploy-{spec.transports[0]}-{spec.baseline}{suffix}"
    assert parse_depends(dag[first].get("depends")) == ["taint"]
    for task in dag.values():  # every dependency names a task of the DAG
        assert set(parse_depends(task.get("depends"))) <= set(dag), task["name"]
    compare_inputs = {a["name"] for a in dag["compare"]["arguments"]["artifacts"]}
    assert "floor" not in compare_inputs
    assert compare_inputs == {f"raw-{n}" for n in dag if n.startswith("load-")}
    assert "floor" not in json.dumps(dag)  # nothing else refers to a floor task
    assert _carried_spec(d)["floor"] is False  # the steps see the switch too


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_the_workflow_without_the_floor_validates(name: str, kind: Kind) -> None:
    from hera.workflows.models import CronWorkflow, Workflow, WorkflowTemplate

    d = compile_dict(_spec(name, floor=False), kind)
    model: Any = {"workflow": Workflow, "template": WorkflowTemplate, "cron": CronWorkflow}[kind]
    assert model.model_validate(d).kind == d["kind"]
    if not ARGO_SCHEMA.exists():
        pytest.skip(f"Argo JSON schema not found at {ARGO_SCHEMA} (Hera's models checked)")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(ARGO_SCHEMA.read_text())
    sub = {
        "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{ARGO_KIND[kind]}",
        "definitions": schema["definitions"],
    }
    jsonschema.Draft202012Validator(sub).validate(d)


@pytest.mark.parametrize("kind", KINDS)
def test_the_default_is_the_floor_on_and_leaves_the_compiled_workflow_as_it_was(kind: Kind) -> None:
    default = _spec("seed")
    assert default.floor is True and "floor" not in default.to_json_dict()
    explicit = _spec("seed", floor=True)
    assert compile_dict(explicit, kind) == compile_dict(default, kind)
    d = compile_dict(default, kind)
    dag = _dag(d)
    assert parse_depends(dag["floor"].get("depends")) == ["taint"]
    assert "floor" not in _carried_spec(d)
    assert "floor" in {a["name"] for a in dag["compare"]["arguments"]["artifacts"]}


def test_a_floor_switch_that_is_not_a_boolean_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^spec: floor: Input should be a valid boolean") as err:
        parse_spec({"name": "x", "floor": "no"})
    assert "\n" not in str(err.value)
    assert parse_spec({"name": "x", "floor": False}).to_json_dict()["floor"] is False


def _report_text(run_dir: Path, summary_update: dict[str, Any], out: Path) -> str:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary.update(summary_update)
    path.write_text(json.dumps(summary))
    return build_report(run_dir, out).read_text()


def test_summary_and_report_say_the_floor_was_switched_off(tmp_path: Path) -> None:
    off = floor_record(parse_spec({"name": "x", "floor": False}), None)
    assert off == {"floor_measured": False, "floor_note": FLOOR_OFF_NOTE}
    assert len(FLOOR_OFF_NOTE) <= 80  # one terminal line
    text = _report_text(make_run_dir(tmp_path / "off", floor=False), off, tmp_path / "off.html")
    assert FLOOR_OFF_NOTE in text
    assert "floor.json is missing" not in text


def test_a_floor_that_was_on_but_left_no_file_is_still_called_missing(tmp_path: Path) -> None:
    on = parse_spec({"name": "x"})
    assert floor_record(on, {"k6": {}}) == {"floor_measured": True}
    missing = floor_record(on, None)
    assert missing == {"floor_measured": False}
    text = _report_text(make_run_dir(tmp_path / "lost", floor=False), missing, tmp_path / "lost.html")
    assert "No measurement floor was recorded for this run (floor.json is missing)." in text
    assert "switched off" not in text
