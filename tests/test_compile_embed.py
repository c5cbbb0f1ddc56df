"""What a compiled workflow carries so that no step reads the submitting machine's files: the
manifest document inline in the `spec` parameter, each payload as a base64 raw input artifact."""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import yaml
from PIL import Image

from orchbench.cli.run_cmd import compiled
from orchbench.core.spec import load_spec
from pipelines.templates import MAX_EMBEDDED_PAYLOAD_BYTES
from tests.helpers import ROOT, orchbench


def _spec(folder: Path, payloads: dict[str, str], **extra: object) -> Path:
    path = folder / "spec.yaml"
    path.write_text(
        yaml.safe_dump({"name": "embed", "transports": sorted(payloads), "payloads": payloads, **extra})
    )
    return path


def _templates(wf: dict) -> dict[str, dict]:
    return {t["name"]: t for t in wf["spec"]["templates"]}


def test_payloads_and_manifest_travel_inside_the_workflow(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    rest = (ROOT / "payloads" / "flowers.json").read_bytes()
    grpc = (ROOT / "payloads" / "flowers.bin").read_bytes()
    (tmp_path / "p" / "a.json").write_bytes(rest)
    (tmp_path / "p" / "b.bin").write_bytes(grpc)
    manifest = yaml.safe_load((ROOT / "manifests" / "tf_flowers.yaml").read_text())
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    spec = load_spec(_spec(tmp_path, {"rest": "p/a.json", "grpc": "p/b.bin"}, manifest="m.yaml"))
    wf = compiled(spec, "workflow")
    params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    carried = json.loads(params["spec"])
    assert carried["manifest"] == manifest  # the document, not a path on this machine
    assert carried["payloads"] == {"rest": "p/a.json", "grpc": "p/b.bin"}  # names, for provenance
    arts = {a["name"]: a for a in _templates(wf)["loadtest-arms"]["inputs"]["artifacts"]}
    assert base64.b64decode(arts["payload-rest"]["raw"]["data"]) == rest
    assert base64.b64decode(arts["payload-grpc"]["raw"]["data"]) == grpc
    assert arts["payload-grpc"]["path"] == "/tmp/orchbench/in/payloads/grpc.b64"
    floor = {a["name"] for a in _templates(wf)["floor"]["inputs"]["artifacts"]}
    assert floor == {"payload-rest"}  # the floor measures the model on the REST body
    assert str(tmp_path) not in json.dumps(wf)  # nothing points back at the submitting machine


def _big_rest_payload(path: Path, at_least: int) -> None:
    rng = random.Random(1)
    side = 700
    img = Image.frombytes("RGB", (side, side), bytes(rng.getrandbits(8) for _ in range(side * side * 3)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=100)
    assert buf.tell() > at_least
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(buf.getvalue()).decode()}, "key": "1"}]}
    path.write_text(json.dumps(body))


def test_a_payload_too_large_to_embed_is_refused_at_compile_time(tmp_path: Path) -> None:
    _big_rest_payload(tmp_path / "big.json", MAX_EMBEDDED_PAYLOAD_BYTES)
    spec = _spec(tmp_path, {"rest": "big.json"})
    proc = orchbench("compile", "--spec", str(spec), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "payloads.rest" in lines[0] and "big.json" in lines[0]
    assert "etcd" in lines[0] and "1.5 MiB" in lines[0]
    assert not list(tmp_path.glob("*.yaml.*"))
