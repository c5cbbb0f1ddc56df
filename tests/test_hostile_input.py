"""Issue 15's list of nonsense, hostile and secret-leaking input: each case refused in ONE line naming
the file and the field (exit 2), never a traceback, a hang or an overhead computed from it."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchbench.core.errors import ConfigError
from orchbench.core.spec import load_spec
from serving.errors import ServingConfigError
from tests.helpers import FIXTURES, ROOT

VEGETA = json.loads((FIXTURES / "seed_vegeta_rest_with.json").read_text())
GHZ = json.loads((FIXTURES / "seed_ghz_grpc_with.json").read_text())


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    res = subprocess.run(
        [sys.executable, "-m", "orchbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    return res.returncode, res.stdout, res.stderr


def one_line(rc: int, err: str, *needles: str, code: int = 2) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(("orchbench: error: ", "orchbench serve")), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _k6(metric: str = "http", arms: tuple[str, ...] = (), avg: float = 2.0) -> dict[str, Any]:
    trend = {"avg": avg, "min": 1.0, "med": 1.9, "max": 9.0, "p(90)": 3.0, "p(95)": 4.0, "p(99)": 5.0}
    metrics: dict[str, Any] = {f"{metric}_req_duration{{scenario:measure}}": {"values": trend}}
    counter = "http_reqs" if metric == "http" else "iterations"
    metrics[f"{counter}{{scenario:measure}}"] = {"values": {"count": 100, "rate": 50.0}}
    for arm in arms:
        metrics[f"{metric}_req_duration{{scenario:measure,arm:{arm}}}"] = {"values": trend}
    return {"metrics": metrics}


def _write(tmp: Path, name: str, data: Any) -> str:
    path = tmp / name
    path.write_text(json.dumps(data))
    return str(path)


def _vegeta(**latencies: float) -> dict[str, Any]:
    doc = copy.deepcopy(VEGETA)
    doc["latencies"].update(latencies)
    return doc


# --------------------------------------------------------------------------------------------------
# compare


COMPARE_CASES: dict[str, tuple[Any, Any, list[str]]] = {
    "rest-vs-grpc": (_k6("http"), _k6("grpc"), ["without.json", "transport is grpc", "'with' arm", "rest"]),
    "k6-vs-ghz": (_k6("grpc"), GHZ, ["without.json", "tool is ghz", "is k6"]),
    "negative-latency": (VEGETA, _vegeta(mean=-156e6), ["without.json", "latencies.mean", "greater than 0"]),
    "zero-latency": (_vegeta(min=0), VEGETA, ["with.json", "latencies.min is 0 ms"]),
    "zero-requests": (VEGETA, {**VEGETA, "requests": 0}, ["without.json", "requests is 0"]),
    "mean-above-max": (VEGETA, _vegeta(mean=1e300), ["without.json"]),
    "mean-over-max": (VEGETA, _vegeta(mean=2e9), ["without.json", "latencies.mean", "above latencies.max"]),
    "combined-k6": (
        _k6("http", ("with", "without")),
        _k6("http"),
        ["with.json", "paired run", "not one arm"],
    ),
}


@pytest.mark.parametrize("case", sorted(COMPARE_CASES))
def test_compare_refuses(tmp_path: Path, case: str) -> None:
    with_doc, without_doc, needles = COMPARE_CASES[case]
    a, b = _write(tmp_path, "with.json", with_doc), _write(tmp_path, "without.json", without_doc)
    rc, out, err = cli("compare", "--with", a, "--without", b)
    one_line(rc, err, *needles)
    assert out == "", "an overhead was printed"


def test_compare_same_k6_pair_still_works(tmp_path: Path) -> None:
    a, b = _write(tmp_path, "with.json", _k6("http", avg=2.5)), _write(tmp_path, "without.json", _k6("http"))
    rc, out, err = cli("compare", "--with", a, "--without", b, "--json")
    assert rc == 0, err
    assert json.loads(out)["overhead_ms"]["mean"] == pytest.approx(0.5)


def test_compare_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    good = _write(tmp_path, "good.json", VEGETA)
    rc, _, err = cli("compare", "--with", str(fifo), "--without", good, timeout=30)
    one_line(rc, err, str(fifo), "FIFO", "not a regular file")


def test_compare_oversized_and_deep_json(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.json", VEGETA)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    rc, _, err = cli("compare", "--with", str(deep), "--without", good)
    one_line(rc, err, str(deep), "nested more than 64 levels")
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(129 * 2**20)  # sparse: 129 MiB of NUL
    rc, _, err = cli("compare", "--with", str(big), "--without", good)
    one_line(rc, err, str(big), "larger than the limit of 128 MiB")


# --------------------------------------------------------------------------------------------------
# specs, manifests, payloads


def _spec_text(**over: Any) -> str:
    data: dict[str, Any] = {"name": "hostile", "transports": ["rest"], "blocks": 1, **over}
    return yaml.safe_dump(data)


def _deep_yaml(depth: int) -> str:
    return "[" * depth + "]" * depth


SPEC_CASES: dict[str, tuple[str, list[str]]] = {
    "deep-yaml": (f"name: x\nlocal: {_deep_yaml(5000)}\n", ["not valid YAML", "nested more than 64 levels"]),
    "duplicate-key": (
        "name: x\nblocks: 2\nblocks: 50\n",
        ["not valid YAML", "line 3", "duplicate key 'blocks'"],
    ),
    "duplicate-nested-key": (
        "name: x\nload:\n  workers: 1\n  workers: 2\n",
        ["duplicate key 'workers'", "also at line 3"],
    ),
    "bool-for-int": ("name: x\nblocks: true\n", ["blocks: Input should be a valid integer, got True"]),
    "string-for-int": ("name: x\nblocks: '3'\n", ["blocks: Input should be a valid integer"]),
    "k6-warmup": (
        _spec_text(load={"warmup_s": 0.5}),
        ["load.warmup_s: k6 needs a warm-up of 0 or at least 1 s, got 0.5"],
    ),
    "k6-duration": (
        _spec_text(load={"duration_s": 0.5}),
        ["load.duration_s: k6 needs a duration of at least 1 s"],
    ),
    "ghz-rate": (
        _spec_text(transports=["grpc"], load={"tool": "ghz", "mode": "open", "rate": 2.5}),
        ["load.rate: ghz needs a whole open-loop rate"],
    ),
    "nan-threshold": ("name: x\nthresholds: {rest_ms: .nan}\n", ["thresholds.rest_ms", "finite number"]),
    "inf-duration": ("name: x\nload: {duration_s: .inf}\n", ["load.duration_s", "finite number"]),
    "negative-threshold": (
        _spec_text(thresholds={"grpc_ms": -1}),
        ["thresholds.grpc_ms", "greater than or equal to 0"],
    ),
    "port-out-of-range": (
        _spec_text(local={"ports": {"with": 99999}}),
        ["local.ports.with", "less than or equal to 65535"],
    ),
    "billion-laughs": (
        "name: x\na: &a [1,1,1,1,1,1,1,1,1,1]\n"
        + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
        )
        + "argo: *h\n",
        ["expands to more than"],
    ),
}


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_spec_refused_at_load(tmp_path: Path, case: str) -> None:
    text, needles = SPEC_CASES[case]
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for needle in needles:
        assert needle in message, (needle, message)


def test_privileged_port_refused_for_a_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    path = tmp_path / "spec.yaml"
    path.write_text(_spec_text(local={"ports": {"with": 80}}))
    with pytest.raises(ConfigError, match=r"local.ports.with: port 80 is privileged"):
        load_spec(path)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "too-big", "directory"])
def test_spec_file_kinds(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "spec.yaml"
        os.mkfifo(path)
        needle = "spec not readable: is a FIFO (named pipe), not a regular file"
    elif kind == "dev-zero":
        path, needle = Path("/dev/zero"), "spec not readable: is a character device, not a regular file"
    elif kind == "too-big":
        path = tmp_path / "spec.yaml"
        path.write_text("name: x\n" + "# padding\n" * 200_000)
        needle = "larger than the limit of 1 MiB"
    else:
        path = tmp_path / "spec.yaml"
        path.mkdir()
        needle = "is a directory"
    rc, _, err = cli("compile", "--spec", str(path), timeout=30)
    one_line(rc, err, str(path), needle)


def test_deep_manifest_and_payload(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("spec: " + _deep_yaml(3000) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(_spec_text(manifest=str(manifest)))
    with pytest.raises(ConfigError, match=r"m.yaml: not valid YAML \(.*nested more than 64"):
        load_spec(spec)
    payload = tmp_path / "p.json"
    payload.write_text('{"instances": ' + "[" * 50_000 + "]" * 50_000 + "}")
    spec.write_text(_spec_text(payloads={"rest": str(payload)}))
    with pytest.raises(ConfigError, match=r"p.json: not a usable REST payload: JSON is nested more than 64"):
        load_spec(spec)


def test_oversized_manifest_and_payload(tmp_path: Path) -> None:
    """Every file a spec names is read with a size cap (a sparse file: nothing is really written)."""
    manifest = tmp_path / "m.yaml"
    with open(manifest, "wb") as fh:
        fh.truncate(2 * 2**20)
    spec = tmp_path / "spec.yaml"
    spec.write_text(_spec_text(manifest=str(manifest)))
    with pytest.raises(ConfigError) as info:
        load_spec(spec)
    assert str(info.value) == f"{manifest}: manifest not readable: is 2.0 MiB, larger than the limit of 1 MiB"
    payload = tmp_path / "p.json"
    with open(payload, "wb") as fh:
        fh.truncate(65 * 2**20)
    spec.write_text(_spec_text(payloads={"rest": str(payload)}))
    with pytest.raises(ConfigError) as info:
        load_spec(spec)
    assert str(info.value) == f"{payload}: payload not readable: is 65.0 MiB, larger than the limit of 64 MiB"


def test_missing_payload_names_the_field_not_a_folder(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        _spec_text(transports=["rest", "grpc"], payloads={"rest": str(ROOT / "payloads" / "flowers.json")})
    )
    with pytest.raises(ConfigError) as info:
        load_spec(spec)
    assert str(info.value).endswith("payloads.grpc: no payload for transport grpc"), info.value


# --------------------------------------------------------------------------------------------------
# the command line


@pytest.mark.parametrize(
    "args,needles",
    [
        (["submit", "--kind", "bogus"], ["--kind", "'bogus'", "workflow"]),
        (["compile", "--kind", "bogus"], ["--kind", "'bogus'"]),
        (["run", "--blocks", "3"], ["No such option: --blocks"]),
        (["trend"], ["Missing argument"]),
        (["nonsense"], ["No such command 'nonsense'"]),
        (["compare", "--with"], ["'--with' requires an argument"]),
        (
            ["trend", "/nonexistent", "--threshold-ms", "nan"],
            ["--threshold-ms", "finite number >= 0, got nan"],
        ),
        (["trend", "/nonexistent", "--threshold-ms", "-1"], ["--threshold-ms", "got -1.0"]),
        (["trend", "/nonexistent", "--min-effect-ms", "inf"], ["--min-effect-ms"]),
        (["submit", "--token", "s3cret"], ["--token is refused", "ARGO_TOKEN", "--token-file"]),
    ],
)
def test_usage_errors_one_line(args: list[str], needles: list[str]) -> None:
    rc, _, err = cli(*args)
    line = one_line(rc, err, *needles)
    assert "s3cret" not in line


@pytest.mark.parametrize(
    "args,needles",
    [
        (["serve", "model", "--rest-port", "99999"], ["--rest-port", "port 99999 is outside 1..65535"]),
        (
            ["serve", "orchestrator", "--rest-port", "8000", "--upstream-rest", "notahost"],
            ["--upstream-rest", "expected HOST:PORT, got 'notahost'"],
        ),
    ],
)
def test_serve_usage_errors_one_line(args: list[str], needles: list[str]) -> None:
    rc, _, err = cli(*args)
    one_line(rc, err, *needles)


def _silent_server() -> tuple[socket.socket, int]:
    """Accepts connections and never answers (a hung Argo server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conns.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_submit_token_over_http_refused_then_times_out(tmp_path: Path) -> None:
    srv, port = _silent_server()
    try:
        host = f"http://127.0.0.1:{port}"
        env = {"ARGO_TOKEN": "s3cret-token"}
        rc, _, err = cli("submit", "--spec", "seed", "--host", host, env=env)
        line = one_line(rc, err, "refusing to send the bearer token over plain http", "--insecure-http")
        assert "s3cret" not in line
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-token\n")
        rc, _, err = cli(
            "submit",
            "--spec",
            "seed",
            "--host",
            host,
            "--token-file",
            str(token_file),
            "--insecure-http",
            "--timeout-s",
            "1",
            timeout=60,
        )
        assert "s3cret" not in err
        lines = err.strip().splitlines()
        assert lines[0].startswith("orchbench: warning: sending the bearer token"), err
        assert len(lines) == 2 and "no answer within 1 s" in lines[1], err
        assert rc == 2
    finally:
        srv.close()


# --------------------------------------------------------------------------------------------------
# the weights file


def test_tampered_weights_refused_before_unpickling(tmp_path: Path) -> None:
    from serving import convert
    from serving.weights import load_state_dict

    shipped = convert.weights_path()
    fake = tmp_path / shipped.name
    shutil.copyfile(shipped, fake)
    with open(fake, "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ServingConfigError, match=r"sha256 .* is not the pinned 579344248a93"):
        load_state_dict(fake)


def test_every_pickle_is_restricted(tmp_path: Path) -> None:
    """Not only the state dict: a callable in the first pickle (the magic number) is refused too."""
    import pickle

    from serving.weights import load_state_dict

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps(print) + pickle.dumps(1001))
    with pytest.raises(ServingConfigError, match=r"refusing to load global builtins\.print"):
        load_state_dict(bad)
