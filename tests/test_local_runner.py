"""The local runner executes the compiled dict itself: DAG order, parameters, artifacts, exit handler."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from hera.workflows import DAG, Artifact, Script, Task, Workflow

from orchbench.core.errors import ConfigError
from pipelines.local_runner import Interrupted, LocalRunner, StepFailed, parse_depends, step_error
from tests import runner_steps as rs
from tests.helpers import ROOT


@pytest.fixture(autouse=True)
def _steps_of_the_tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """These workflows run step functions of tests/runner_steps.py, which no install provides: the
    child steps find them through PYTHONPATH (the local runner passes its environment on)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


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


def _one_step(fn, message: str) -> dict:
    with Workflow(generate_name="t-", entrypoint="main") as w:
        tpl = _script(fn)
        with DAG(name="main"):
            Task(name="s", template=tpl, arguments={"message": message})
    return w.to_dict()


@pytest.mark.slow
def test_step_error_is_read_from_the_record_the_step_wrote(tmp_path):
    runner = LocalRunner(_one_step(rs.fail, "spec line 3: bad port"), tmp_path / "run")
    with pytest.raises(StepFailed, match=r"^step s failed \(exit 2\): spec line 3: bad port$"):
        runner.run()
    record = json.loads((tmp_path / "run" / "tasks" / "s" / "fs" / "error.json").read_text())
    assert record == {
        "error": "ConfigError",
        "exit_code": 2,
        "message": "spec line 3: bad port",
        "unexpected": False,
    }


@pytest.mark.slow
def test_unexpected_exception_in_a_step_is_recorded_with_its_class(tmp_path):
    runner = LocalRunner(_one_step(rs.bug, "index out of range"), tmp_path / "run")
    with pytest.raises(StepFailed, match=r"^step s failed \(exit 1\): ValueError: index out of range$"):
        runner.run()
    stderr = (tmp_path / "run" / "tasks" / "s" / "stderr.log").read_text()
    assert "Traceback" in stderr  # a bug keeps its traceback in the task's log


@pytest.mark.slow
def test_step_killed_by_a_signal_says_so(tmp_path):
    runner = LocalRunner(_one_step(rs.die, "loading the model"), tmp_path / "run")
    with pytest.raises(
        StepFailed,
        match=r"^step s was killed by signal SIGKILL without recording an error; "
        r"last stderr line: loading the model$",
    ):
        runner.run()


def test_step_error_prefers_the_record_to_stderr(tmp_path: Path) -> None:
    record, stderr = tmp_path / "error.json", tmp_path / "stderr.log"
    stderr.write_text("[orchbench] error: what stderr says\nTraceback (most recent call last):\n")
    record.write_text(json.dumps({"error": "PlatformError", "exit_code": 1, "message": "port 9000 in use"}))
    assert step_error("deploy", 1, record, stderr) == "step deploy failed (exit 1): port 9000 in use"
    record.write_text("{not json")  # a torn or foreign file counts as no record
    assert step_error("deploy", 3, record, stderr) == (
        "step deploy failed (exit 3) without recording an error; "
        "last stderr line: Traceback (most recent call last):"
    )
    record.unlink()
    stderr.unlink()
    assert step_error("deploy", -15, record, stderr) == (
        "step deploy was killed by signal SIGTERM without recording an error; last stderr line: (no stderr)"
    )


def test_workflow_uid_is_one_per_run() -> None:
    wf = _one_step(rs.shout, "x")
    a, b = LocalRunner(wf, Path("/nonexistent/a")), LocalRunner(wf, Path("/nonexistent/b"))
    assert a.subst("{{workflow.uid}}") == a.uid == str(uuid.UUID(a.uid))
    assert a.uid != b.uid
    wf["metadata"]["uid"] = "given-uid"
    assert LocalRunner(wf, Path("/nonexistent/c")).subst("{{ workflow.uid }}") == "given-uid"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_started_with_die_with_parent_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    """What the local runner (steps) and the load-tool launcher (k6, vegeta, ghz) rely on: SIGKILL
    the parent, and the child gets SIGTERM at once, with nobody left to stop it."""
    parent_code = (
        "import subprocess, sys, time\n"
        "from orchbench.core.parentdeath import die_with_parent\n"
        "child = subprocess.Popen(['sleep', '60'], start_new_session=True, preexec_fn=die_with_parent())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, cwd=ROOT, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(child), "the child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


@pytest.mark.slow
def test_sighup_stops_the_run_like_sigterm_and_the_exit_handler_runs(tmp_path: Path) -> None:
    marker = tmp_path / "exit-status"
    with Workflow(generate_name="t-", entrypoint="main", on_exit="bye") as w:
        nap, mark = _script(rs.nap), _script(rs.mark)
        with DAG(name="main"):
            Task(name="s", template=nap, arguments={"message": "napping"})
        with DAG(name="bye"):
            Task(name="mark", template=mark, arguments={"path": str(marker), "status": "{{workflow.status}}"})
    runner = LocalRunner(w.to_dict(), tmp_path / "run")
    stderr = tmp_path / "run" / "tasks" / "s" / "stderr.log"

    def hang_up_once_napping() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if stderr.exists() and "napping" in stderr.read_text(errors="replace"):
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGHUP)  # handled by runner.run() (it stops the run)

    before = signal.getsignal(signal.SIGHUP)
    hup = threading.Thread(target=hang_up_once_napping, daemon=True)
    hup.start()
    started = time.monotonic()
    with pytest.raises(Interrupted, match=r"^interrupted by SIGHUP during s$"):
        runner.run()
    hup.join(10)
    assert time.monotonic() - started < 50, "the step was not stopped"
    assert marker.read_text() == "Failed"  # the exit handler ran
    assert signal.getsignal(signal.SIGHUP) == before  # and the handler was put back
