"""orchbench installed as users (and the steps image) install it: a wheel, not editable, in a fresh
virtual environment, used from a folder outside the checkout with the repository out of reach.

One module-scoped fixture builds the wheel from a copy of the source tree (so the checkout gets no
build/ folder) and installs it with its dependencies; the tests then run the CLI and the compiled
workflow's steps in that environment, with no PYTHONPATH and another working directory.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.runtime import free_port
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

DOCKERFILE = ROOT / "manifests" / "Dockerfile"


def _dockerfile_sources() -> list[str]:
    """What the steps image copies into its build folder (`COPY <src...> ./src/...`): the test builds
    its wheel from exactly these, so it installs the way the image does."""
    parts: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "COPY" and words[-1].lstrip("./").startswith("src/"):
            parts += [w.rstrip("/") for w in words[1:-1]]
    return parts


def test_the_image_builds_a_wheel_and_installs_it_not_editable() -> None:
    text = DOCKERFILE.read_text()
    assert "pip wheel --no-cache-dir --no-deps -w /tmp/dist ./src" in text
    assert "pip install --no-cache-dir /tmp/dist/orchbench-*.whl" in text
    assert "pip install -e" not in text and "pip install ." not in text
    assert set(_dockerfile_sources()) == {
        "pyproject.toml",
        "README.md",
        "orchbench",
        "steps",
        "pipelines",
        "results_schema",
        "serving",
    }


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, no virtualenv of the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with the wheel installed (not editable)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for part in _dockerfile_sources():
        from_ = ROOT / part
        if from_.is_dir():
            shutil.copytree(
                from_, src / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(from_, src / part)
    dist = base / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("orchbench-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_clean_env(),
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return venv / "bin"


def _empty_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    assert not str(path.resolve()).startswith(str(ROOT))
    return path


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    cwd = _empty_dir(tmp_path, "elsewhere")
    proc = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import orchbench, steps, pipelines, serving, results_schema\n"
            "from orchbench.core.paths import SPECS, PAYLOADS\n"
            "print(orchbench.__file__, steps.__file__, SPECS, PAYLOADS, sep='\\n')",
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    site = str(installed.parent / "lib")
    for line in proc.stdout.split():
        assert line.startswith(site), f"{line} is not from the installed wheel"
    # the shipped data travelled in the wheel
    specs = Path(proc.stdout.split()[2])
    shipped = sorted(p.name for p in (ROOT / "orchbench" / "data" / "specs").glob("*.yaml"))
    assert {"calibrate.yaml", "default.yaml", "seed.yaml"} <= set(shipped)
    assert sorted(p.name for p in specs.glob("*.yaml")) == shipped
    assert (Path(proc.stdout.split()[3]) / "flowers.bin").stat().st_size > 1000


def test_compile_a_shipped_spec_by_short_name(installed: Path, tmp_path: Path) -> None:
    cwd = _empty_dir(tmp_path, "elsewhere")
    proc = subprocess.run(
        [str(installed / "orchbench"), "compile", "--spec", "seed", "-o", "wf.yaml"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    wf = yaml.safe_load((cwd / "wf.yaml").read_text())
    assert wf["kind"] == "Workflow"
    spec = json.loads(next(p["value"] for p in wf["spec"]["arguments"]["parameters"] if p["name"] == "spec"))
    assert spec["manifest"]["kind"] == "SeldonDeployment"  # the manifest travels inside the workflow


def _user_spec(folder: Path, **load: Any) -> Path:
    """A spec of the user's own, its payload next to it under a relative path."""
    (folder / "bodies").mkdir()
    shutil.copy2(ROOT / "orchbench" / "data" / "payloads" / "flowers.json", folder / "bodies" / "mine.json")
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    p_with, p_without, p_model = sorted(ports)
    spec = {
        "name": "mine",
        "platform": "local",
        "transports": ["rest"],
        "payloads": {"rest": "bodies/mine.json"},
        "load": {"tool": "k6", "workers": 1, "duration_s": 1, "warmup_s": 1, **load},
        "blocks": 1,
        "local": {
            "cpu_pinning": False,
            "ports": {"with": p_with, "without": p_without, "model_behind_orchestrator": p_model},
        },
    }
    path = folder / "mine.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_run_a_users_spec_with_relative_payloads(installed: Path, tmp_path: Path) -> None:
    project = _empty_dir(tmp_path, "project")
    _user_spec(project)
    cwd = _empty_dir(tmp_path, "elsewhere")  # run from another folder: paths resolve against the spec's
    proc = subprocess.run(
        [
            str(installed / "orchbench"),
            "run",
            "--spec",
            str(project / "mine.yaml"),
            "--out",
            "out",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((cwd / "out" / "summary.json").read_text())
    assert summary["rest"]["n"]["with"] > 0 and summary["rest"]["n"]["without"] > 0
    meta = next((cwd / "out" / "raw").rglob("meta.json"))
    assert json.loads(meta.read_text())["payload"] == "mine.json"


def _template(wf: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in wf["spec"]["templates"] if t["name"] == name)


def _run_step(
    bin_dir: Path, wf: dict[str, Any], name: str, params: dict[str, str], root: Path, cwd: Path
) -> dict[str, str]:
    """Run one template of the compiled workflow as Argo would: `python -m hera.workflows.runner -e
    steps.<module>:<fn> <inputs file>`, raw input artifacts written where the template says, the
    artifact root mapped into `root`. Returns the output parameters."""
    tpl = _template(wf, name)
    script = tpl["script"]
    for art in (tpl.get("inputs") or {}).get("artifacts", []):
        if "raw" in art:
            dest = root / Path(art["path"]).relative_to("/tmp/orchbench")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(art["raw"]["data"])
    for p in (tpl.get("inputs") or {}).get("parameters", []):  # as Argo does: defaults filled in
        if p["name"] not in params and "default" in p:
            params = {**params, p["name"]: str(p["default"])}
    inputs = cwd / f"{name}.inputs.json"
    inputs.write_text(json.dumps([{"name": k, "value": v} for k, v in params.items()]))
    outputs = root / "hera-outputs"
    proc = subprocess.run(
        [str(bin_dir / "python"), *script["args"], str(inputs)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(ORCHBENCH_ARTIFACT_ROOT=str(root), hera__outputs_directory=str(outputs)),
        timeout=300,
    )
    assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    result = {}
    for p in (tpl.get("outputs") or {}).get("parameters", []):
        result[p["name"]] = (outputs / "parameters" / p["name"]).read_text()
    return result


def test_compiled_steps_run_through_heras_runner(installed: Path, tmp_path: Path) -> None:
    project = _empty_dir(tmp_path, "project")
    _user_spec(project, interleave="block")
    cwd = _empty_dir(tmp_path, "elsewhere")
    compiled = subprocess.run(
        [str(installed / "orchbench"), "compile", "--spec", str(project / "mine.yaml"), "-o", "wf.yaml"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stderr
    wf = yaml.safe_load((cwd / "wf.yaml").read_text())
    spec = next(p["value"] for p in wf["spec"]["arguments"]["parameters"] if p["name"] == "spec")
    # the user's folder is gone: the steps need nothing from the submitting machine
    shutil.rmtree(project)
    root, state = tmp_path / "artifacts", tmp_path / "state"
    common = {"spec": spec, "state_dir": str(state)}
    record = _run_step(installed, wf, "deploy", {**common, "transport": "rest", "arm": "without"}, root, cwd)
    try:
        endpoint = _run_step(installed, wf, "wait", {**common, "record": record["record"]}, root, cwd)
        _run_step(
            installed,
            wf,
            "loadtest",
            {
                **common,
                "endpoint": endpoint["endpoint"],
                "transport": "rest",
                "arm": "without",
                "block": "0",
            },
            root,
            cwd,
        )
    finally:
        _run_step(installed, wf, "teardown", {**common, "record": record["record"]}, root, cwd)
    raw_dir = root / "out" / "raw"
    meta = json.loads((raw_dir / "meta.json").read_text())
    assert meta["status"] == "ok" and meta["arm"] == "without" and meta["payload"] == "mine.json"
    samples = (raw_dir / meta["samples"]).read_text().splitlines()
    assert len(samples) > 10  # k6 sent requests and every one was kept
    # the payload the step sent is the user's file, carried inline by the workflow
    body = (ROOT / "orchbench" / "data" / "payloads" / "flowers.json").read_bytes()
    raw = _template(wf, "loadtest")["inputs"]["artifacts"][0]["raw"]["data"]
    assert base64.b64decode(raw) == body
