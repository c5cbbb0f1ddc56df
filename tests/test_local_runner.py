"""The local runner executes the compiled dict itself: DAG order, parameters, artifacts, exit handler."""

from __future__ import annotations

import copy
import json

import pytest
from hera.workflows import DAG, Artifact, Script, Task, Workflow

from orchbench.core.errors import ConfigError
from pipelines.local_runner import LocalRunner, StepFailed, parse_depends
from tests import runner_steps as rs


def _script(fn, **kw):
    return Script(
        name=fn.__name__.replace("_", "-"),
        source=fn,
        constructor="runner",
        image="x",
        command=["python"],
        **kw,
    )


def _workflow(marker: str, fail_message: str | None = None) -> dict:
    with Workflow(generate_name="t-", entrypoint="main", on_exit="bye") as w:
        shout = _script(rs.shout)
        write = _script(rs.write_art, outputs=[Artifact(name="box", path="/tmp/orchbench/out/box")])
        read = _script(rs.read_art, inputs=[Artifact(name="box", path="/tmp/orchbench/in/box")])
        fail = _script(rs.fail)
        mark = _script(rs.mark)
        with DAG(name="main"):
            a = Task(name="a", template=shout, arguments={"text": "hi"})
            b = Task(name="b", template=write, arguments={"text": a.get_parameter("loud").value})
            a >> b
            c = Task(
                name="c",
                template=read,
                arguments=[b.get_artifact("box").with_name("box"), *[_p("suffix", "?")]],
            )
            b >> c
            if fail_message is not None:
                f = Task(name="f", template=fail, arguments={"message": fail_message})
                c >> f
                g = Task(name="g", template=shout, arguments={"text": "never"})
                f >> g
        with DAG(name="bye"):
            Task(name="mark", template=mark, arguments={"path": marker, "status": "{{workflow.status}}"})
    return w.to_dict()


def _p(name, value):
    from hera.workflows import Parameter

    return Parameter(name=name, value=value)


@pytest.mark.slow
def test_runs_dag_with_parameters_artifacts_and_exit_handler(tmp_path):
    marker = tmp_path / "status.txt"
    runner = LocalRunner(_workflow(str(marker)), tmp_path / "run")
    assert runner.run() == "Succeeded"
    assert runner.tasks["a"].parameters["loud"] == "HI!"
    assert runner.tasks["c"].parameters["content"] == "HI!?"
    assert list(runner.tasks) == ["a", "b", "c", "mark"]  # DAG order, then the exit handler
    written = json.loads((tmp_path / "run" / "tasks" / "b" / "source").read_text())
    assert written == [{"name": "text", "value": "HI!"}]  # what Argo renders for {{inputs.parameters}}
    assert marker.read_text() == "Succeeded"


@pytest.mark.slow
def test_failure_stops_dag_runs_exit_handler_and_keeps_step_message(tmp_path):
    marker = tmp_path / "status.txt"
    runner = LocalRunner(_workflow(str(marker), fail_message="the payload is broken"), tmp_path / "run")
    with pytest.raises(StepFailed, match=r"step f failed \(exit 2\): the payload is broken"):
        runner.run()
    assert "g" not in runner.tasks
    assert marker.read_text() == "Failed"


@pytest.mark.slow
def test_wrongly_wired_parameter_breaks_the_run(tmp_path):
    wf = _workflow(str(tmp_path / "m"))
    dag = next(t for t in wf["spec"]["templates"] if t["name"] == "main")["dag"]["tasks"]
    b = next(t for t in dag if t["name"] == "b")
    b["arguments"]["parameters"][0]["value"] = "{{tasks.a.outputs.parameters.quiet}}"
    with pytest.raises(ConfigError, match=r"cannot resolve \{\{tasks.a.outputs.parameters.quiet\}\}"):
        LocalRunner(wf, tmp_path / "run").run()


@pytest.mark.slow
def test_missing_artifact_and_unknown_argument_are_errors(tmp_path):
    wf = _workflow(str(tmp_path / "m"))
    broken = copy.deepcopy(wf)
    dag = next(t for t in broken["spec"]["templates"] if t["name"] == "main")["dag"]["tasks"]
    next(t for t in dag if t["name"] == "c")["arguments"]["artifacts"][0]["from"] = (
        "{{tasks.a.outputs.artifacts.box}}"
    )
    with pytest.raises(ConfigError, match="cannot resolve artifact"):
        LocalRunner(broken, tmp_path / "r1").run()
    extra = copy.deepcopy(wf)
    dag = next(t for t in extra["spec"]["templates"] if t["name"] == "main")["dag"]["tasks"]
    dag[0]["arguments"]["parameters"].append({"name": "nonsense", "value": "1"})
    with pytest.raises(ConfigError, match=r"unknown arguments \['nonsense'\]"):
        LocalRunner(extra, tmp_path / "r2").run()


def test_overriding_unknown_workflow_parameter_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no parameter 'nope'"):
        LocalRunner(_workflow("m"), tmp_path, parameters={"nope": "1"})


def test_parse_depends():
    assert parse_depends("a && b-2 && c.Succeeded") == ["a", "b-2", "c"]
    assert parse_depends(None) == []
    with pytest.raises(ConfigError, match="unsupported depends"):
        parse_depends("a || b")


def test_template_inputs_need_values(tmp_path):
    runner = LocalRunner(_workflow("m"), tmp_path)
    tpl = runner.templates["shout"]
    assert runner._inputs(tpl, {"text": "x"}) == {"text": "x"}
    with pytest.raises(ConfigError, match="has no value"):
        runner._inputs(tpl, {})
