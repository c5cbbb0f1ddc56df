"""Bad input to `orchbench run`: one line, exit 2, no traceback, and nothing started.

Spec values, the SeldonDeployment manifest and the payloads are all checked when the spec is loaded
(`orchbench.core.spec.load_spec` -> `check_inputs`), before the run folder exists or a process starts.
The spec loader is fuzzed too: random mappings give a Spec or a ConfigError, never another exception.
(Truncated load-tester JSON for `orchbench compare` is covered by tests/test_compare_seed.py, and the
parsers are fuzzed in tests/test_parsers_fuzz.py.)
"""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchbench.core.errors import ConfigError
from orchbench.core.payload_check import check_payload
from orchbench.core.spec import Spec, load_spec, parse_spec
from serving.runtime import free_port
from tests.helpers import ROOT, orchbench

MANIFEST = yaml.safe_load((ROOT / "manifests" / "tf_flowers.yaml").read_text())
REST = (ROOT / "payloads" / "flowers.json").read_bytes()
GRPC = (ROOT / "payloads" / "flowers.bin").read_bytes()


def _spec(tmp: Path, **over: Any) -> dict[str, Any]:
    ports = {"with": free_port(), "without": free_port(), "model_behind_orchestrator": free_port()}
    spec: dict[str, Any] = {
        "name": "bad-input",
        "transports": ["rest", "grpc"],
        "payloads": {
            "rest": str(ROOT / "payloads" / "flowers.json"),
            "grpc": str(ROOT / "payloads" / "flowers.bin"),
        },
        "load": {"duration_s": 2, "warmup_s": 1},
        "blocks": 1,
        "local": {"ports": ports},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def _write(tmp: Path, name: str, content: bytes | str) -> str:
    path = tmp / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def _manifest(tmp: Path, edit: Any) -> str:
    m = json.loads(json.dumps(MANIFEST))
    edit(m)
    return _write(tmp, "manifest.yaml", yaml.safe_dump(m))


def _rest_body(b64: str) -> str:
    return json.dumps({"instances": [{"image_bytes": {"b64": b64}, "key": "1"}]})


def _grpc_body(image: bytes, input_name: str = "image_bytes") -> bytes:
    from serving.protos import make_predict_request, string_tensor

    req = make_predict_request("flowers", image)
    if input_name != "image_bytes":
        req.inputs[input_name].CopyFrom(string_tensor(image))
        del req.inputs["image_bytes"]
    return req.SerializeToString()


# case id -> (function of tmp_path returning the spec file's path, words the error line must contain)
def _case(name: str, tmp: Path) -> tuple[Path, list[str]]:
    spec_file = tmp / "spec.yaml"

    def spec(**over: Any) -> Path:
        spec_file.write_text(yaml.safe_dump(_spec(tmp, **over)))
        return spec_file

    jpeg = base64.b64decode(json.loads(REST)["instances"][0]["image_bytes"]["b64"])
    cases: dict[str, Any] = {
        # the spec itself
        "unknown-key": lambda: (spec(blokcs=2), ["blokcs: unknown key"]),
        "negative-duration": lambda: (spec(load={"duration_s": -1}), ["load.duration_s", "greater than 0"]),
        "open-without-rate": lambda: (spec(load={"mode": "open"}), ["load.rate is required"]),
        "bad-transport": lambda: (spec(transports=["http"]), ["transports.0", "'rest' or 'grpc'"]),
        "bad-yaml": lambda: (Path(_write(tmp, "spec.yaml", "name: x\nload: [1, 2\n")), ["not valid YAML"]),
        "not-a-mapping": lambda: (
            Path(_write(tmp, "spec.yaml", "- just\n- a list\n")),
            ["must be a YAML mapping"],
        ),
        "missing-spec": lambda: (tmp / "nope.yaml", ["spec not found"]),
        # the manifest
        "manifest-not-seldon": lambda: (
            spec(manifest=_manifest(tmp, lambda m: m.update(kind="Deployment"))),
            ["expected kind SeldonDeployment", "Deployment"],
        ),
        "manifest-protocol": lambda: (
            spec(manifest=_manifest(tmp, lambda m: m["spec"].update(protocol="seldon"))),
            ["spec.protocol must be 'tensorflow'", "seldon"],
        ),
        "manifest-misspelled-no-engine": lambda: (
            spec(
                manifest=_manifest(
                    tmp,
                    lambda m: m["spec"]["predictors"][0].update(annotations={"seldonio/no-engine": "true"}),
                )
            ),
            ["'seldonio/no-engine' is not Seldon's", "seldon.io/no-engine"],
        ),
        "manifest-missing": lambda: (spec(manifest=str(tmp / "gone.yaml")), ["manifest not found"]),
        "manifest-is-a-folder": lambda: (spec(manifest=str(tmp)), ["manifest", "not readable"]),
        # the payloads
        "payload-missing": lambda: (
            spec(payloads={"rest": str(tmp / "gone.json")}),
            ["payloads.rest", "not found"],
        ),
        "rest-empty": lambda: (spec(payloads={"rest": _write(tmp, "p.json", "")}), ["payload is empty"]),
        "rest-not-json": lambda: (
            spec(payloads={"rest": _write(tmp, "p.json", "instances: nope")}),
            ["not a usable REST payload", "JSON Parse error"],
        ),
        "rest-no-instances": lambda: (
            spec(payloads={"rest": _write(tmp, "p.json", '{"inputs": []}')}),
            ["Missing 'instances' key"],
        ),
        "rest-empty-instances": lambda: (
            spec(payloads={"rest": _write(tmp, "p.json", '{"instances": []}')}),
            ["'instances' must be a non-empty list"],
        ),
        "rest-bad-base64": lambda: (
            spec(payloads={"rest": _write(tmp, "p.json", _rest_body("not*base64!"))}),
            ["Unable to base64 decode image_bytes"],
        ),
        "rest-not-an-image": lambda: (
            spec(payloads={"rest": _write(tmp, "p.json", _rest_body(base64.b64encode(b"hello").decode()))}),
            ["image is not decodable"],
        ),
        "grpc-empty": lambda: (spec(payloads={"grpc": _write(tmp, "p.bin", b"")}), ["payload is empty"]),
        "grpc-is-json": lambda: (
            spec(payloads={"grpc": _write(tmp, "p.bin", REST)}),
            ["not a", "PredictRequest"],
        ),
        "grpc-garbage": lambda: (
            spec(payloads={"grpc": _write(tmp, "p.bin", bytes(range(256)) * 4)}),
            ["PredictRequest"],
        ),
        "grpc-wrong-input": lambda: (
            spec(payloads={"grpc": _write(tmp, "p.bin", _grpc_body(jpeg, "pixels"))}),
            ["input 'image_bytes' is missing"],
        ),
        "grpc-not-an-image": lambda: (
            spec(payloads={"grpc": _write(tmp, "p.bin", _grpc_body(b"\xff\xd8junk"))}),
            ["image is not decodable"],
        ),
    }
    path, needles = cases[name]()
    return Path(path), needles


CASES = [
    "unknown-key",
    "negative-duration",
    "open-without-rate",
    "bad-transport",
    "bad-yaml",
    "not-a-mapping",
    "missing-spec",
    "manifest-not-seldon",
    "manifest-protocol",
    "manifest-misspelled-no-engine",
    "manifest-missing",
    "manifest-is-a-folder",
    "payload-missing",
    "rest-empty",
    "rest-not-json",
    "rest-no-instances",
    "rest-empty-instances",
    "rest-bad-base64",
    "rest-not-an-image",
    "grpc-empty",
    "grpc-is-json",
    "grpc-garbage",
    "grpc-wrong-input",
    "grpc-not-an-image",
]


@pytest.mark.parametrize("case", CASES)
def test_load_spec_refuses(tmp_path: Path, case: str) -> None:
    path, needles = _case(case, tmp_path)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def _serving_processes_on(ports: set[str]) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ("serving." in cmd or "k6" in cmd or "hera.workflows.runner" in cmd) and ports & set(cmd.split()):
            found.append(cmd)
    return found


@pytest.mark.parametrize("case", CASES)
def test_run_refuses_before_starting(tmp_path: Path, case: str) -> None:
    """Through the CLI as a user runs it: exit 2, one `orchbench: error:` line, no run folder."""
    path, needles = _case(case, tmp_path)
    ports: set[str] = set()
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text())
            ports = {str(p) for p in (data.get("local") or {}).get("ports", {}).values()}
        except (yaml.YAMLError, AttributeError):
            ports = set()
    out = tmp_path / "out"
    res = orchbench("run", "--spec", str(path), "--out", str(out), "--quiet", timeout=60)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("orchbench: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not out.exists(), "the run folder was created: something started before the input was checked"
    if ports:
        assert not _serving_processes_on(ports)


def test_shipped_payloads_pass(tmp_path: Path) -> None:
    check_payload(ROOT / "payloads" / "flowers.json", "rest")
    check_payload(ROOT / "payloads" / "flowers.bin", "grpc")
    with pytest.raises(ConfigError, match="no payload check"):
        check_payload(ROOT / "payloads" / "flowers.json", "http")


# --------------------------------------------------------------------------------------------------
# fuzzing the spec loader

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=10)
)
json_values = st.recursive(
    _leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
#: Real keys of the spec, per section, so random values reach the validators behind them.
SECTIONS: dict[str, list[str]] = {
    "load": ["tool", "mode", "workers", "rate", "duration_s", "warmup_s", "timeout_s", "max_error_rate"],
    "local": ["cpu_pinning", "inject_delay_ms", "model_threads", "ready_timeout_s", "ports", "aa_mode"],
    "kubernetes": ["namespace", "loadtester_nodes", "model_nodes", "ready_timeout_s"],
    "argo": [
        "namespace",
        "service_account",
        "image",
        "image_pull_policy",
        "schedule",
        "timezone",
        "dataset_key",
    ],
    "thresholds": ["rest_ms", "grpc_ms"],
}
TOP = ["name", "platform", "manifest", "transports", "payloads", "blocks", "order_seed", *SECTIONS]
_good_leaf = st.sampled_from(
    [
        "x",
        "rest",
        "grpc",
        "open",
        "closed",
        "k6",
        "local",
        "kubernetes",
        0,
        1,
        -1,
        2.5,
        1e9,
        None,
        True,
        [],
        {},
        ["rest"],
        ["grpc", "rest"],
        {"rest": "p"},
    ]
).map(copy.deepcopy)  # a fresh copy each draw: mutated_valid_spec writes into dicts it drew before


@st.composite
def spec_like(draw: st.DrawFn) -> Any:
    data: dict[Any, Any] = {}
    if draw(st.booleans()):
        data["name"] = draw(st.sampled_from(["x", "ok-name", "", "Bad Name", "-x", 3]))
    for key in draw(st.lists(st.sampled_from(TOP), max_size=6, unique=True)):
        if key in SECTIONS and draw(st.booleans()):
            sub = draw(st.lists(st.sampled_from(SECTIONS[key]), max_size=4, unique=True))
            data[key] = {k: draw(_good_leaf | json_values) for k in sub}
            if key == "local" and "ports" in data[key] and draw(st.booleans()):
                data[key]["ports"] = draw(
                    st.dictionaries(
                        st.sampled_from(["with", "without", "model_behind_orchestrator", "other"]),
                        st.integers(-5, 70000) | json_values,
                        max_size=3,
                    )
                )
        else:
            data[key] = draw(_good_leaf | json_values)
    if draw(st.integers(0, 9)) == 0:
        data[draw(st.text(max_size=6) | st.integers())] = draw(json_values)
    return data


_VALID = Spec.model_validate({"name": "x"}).to_json_dict()


@st.composite
def mutated_valid_spec(draw: st.DrawFn) -> Any:
    """A valid spec (all keys written out) with one to three leaves replaced: mostly near misses."""
    data = json.loads(json.dumps(_VALID))
    for _ in range(draw(st.integers(1, 3))):
        node = data
        while True:
            key = draw(st.sampled_from(sorted(node)))
            if isinstance(node[key], dict) and node[key] and draw(st.integers(0, 3)):
                node = node[key]
                continue
            node[key] = draw(_good_leaf | json_values)
            break
    return data


def _spec_or_config_error(data: Any) -> Spec | None:
    try:
        spec = parse_spec(data, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml: ") and "\n" not in str(exc)
        return None
    assert isinstance(spec, Spec)
    spec.block_order()
    spec.to_json_dict()
    return spec


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_like() | mutated_valid_spec())
def test_fuzz_spec_shaped_input(data: Any) -> None:
    _spec_or_config_error(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_any_json_value(data: Any) -> None:
    _spec_or_config_error(data)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_fuzz_spec_file_text(tmp_path: Path, text: str) -> None:
    """Any file content: load_spec returns a Spec or raises ConfigError."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, errors="surrogateescape")
    try:
        load_spec(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
