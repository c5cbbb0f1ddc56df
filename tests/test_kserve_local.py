"""KServe's model server as a local option, without starting it: the spec's choice, what it refuses,
where its virtual environment is, how a failed build reads, and the code it is given to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import orchbench
import serving
from orchbench.core.errors import ConfigError
from orchbench.core.platform import kserve_local
from orchbench.core.platform.local import LocalPlatform
from orchbench.core.spec import parse_spec
from tests.helpers import ROOT


def test_the_local_spec_chooses_the_model_server() -> None:
    default = parse_spec({"name": "x"})
    assert default.local.model_server == "bundled"
    assert "model_server" not in default.to_json_dict()["local"]  # older specs dump as before
    chosen = parse_spec({"name": "x", "protocol": "v2", "local": {"model_server": "kserve"}})
    assert chosen.local.model_server == "kserve"
    assert chosen.to_json_dict()["local"]["model_server"] == "kserve"
    with pytest.raises(ConfigError, match="model_server"):
        parse_spec({"name": "x", "local": {"model_server": "triton"}})
    with pytest.raises(ConfigError, match="model_grpc_impl applies to the bundled model server only"):
        parse_spec({"name": "x", "local": {"model_server": "kserve", "model_grpc_impl": "grpcio"}})
    # tfserving over gRPC is refused by the spec itself, before any step starts
    with pytest.raises(ConfigError, match=r"tfserving protocol over REST only .* use protocol: v2"):
        parse_spec({"name": "x", "transports": ["rest", "grpc"], "local": {"model_server": "kserve"}})
    rest_only = parse_spec({"name": "x", "transports": ["rest"], "local": {"model_server": "kserve"}})
    assert rest_only.protocol == "tfserving"
    with pytest.raises(ConfigError, match="model_server must be one of bundled, kserve"):
        LocalPlatform(Path("/nonexistent"), model_server="triton")


def test_what_kserve_cannot_serve_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tfserving protocol over REST only .* use protocol: v2") as err:
        kserve_local.check_fits("tfserving", "grpc", {})
    assert "\n" not in str(err.value)
    for protocol, transport in (("tfserving", "rest"), ("v2", "rest"), ("v2", "grpc")):
        kserve_local.check_fits(protocol, transport, {})
    # the platform refuses it in deploy, before it looks for (or builds) KServe's environment
    from orchbench.core.manifest import load_manifest, render
    from orchbench.core.paths import MANIFESTS

    plat = LocalPlatform(tmp_path, model_server="kserve", endpoint_extras={"protocol": "tfserving"})
    manifest = render(load_manifest(MANIFESTS / "tf_flowers.yaml"), "grpc", "without")
    with pytest.raises(ConfigError, match="use protocol: v2"):
        plat.deploy(manifest, "without", tmp_path / "r.json", hop="model")
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "logs").exists()


def test_the_venv_sits_beside_this_one_unless_told(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(kserve_local.VENV_ENV, raising=False)
    if sys.prefix != sys.base_prefix:
        assert kserve_local.venv_dir() == Path(sys.prefix + "-kserve")
    monkeypatch.setenv(kserve_local.VENV_ENV, str(tmp_path / "kv"))
    assert kserve_local.venv_dir() == tmp_path / "kv"
    # the Makefile builds what the platform looks for: $(VENV)-kserve, exported to the tests
    make = (ROOT / "Makefile").read_text()
    assert "KSERVE_VENV ?= $(VENV)-kserve" in make and "export ORCHBENCH_KSERVE_VENV" in make
    assert "test: $(STAMP) $(KSERVE_STAMP)" in make


def test_a_venv_counts_as_built_only_with_its_stamp_of_these_requirements(tmp_path: Path) -> None:
    venv = tmp_path / "kv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    assert not kserve_local.is_built(venv)  # half-built: no stamp
    (venv / kserve_local.STAMP).write_text("kserve==0.1\n")
    assert not kserve_local.is_built(venv)  # built for other requirements: rebuilt
    (venv / kserve_local.STAMP).write_text("\n".join(kserve_local.REQUIREMENTS) + "\n")
    assert kserve_local.is_built(venv)
    assert kserve_local.ensure(venv, build_missing=False) == venv / "bin" / "python"
    with pytest.raises(kserve_local.KServeUnavailable, match=r"not built .* run `make kserve-venv`"):
        kserve_local.ensure(tmp_path / "none", build_missing=False)


def test_a_failed_build_is_one_line_naming_its_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network needed: the interpreter that would create the venv fails."""
    # the command line `make kserve-venv` runs: one line, exit 1, no traceback
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from orchbench.core.platform import kserve_local as k; "
         "k.sys.executable = '/bin/false'; sys.exit(k.main(sys.argv[1:]))", "--venv", str(tmp_path / "kv2")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot build KServe's")
    monkeypatch.setattr(kserve_local.sys, "executable", "/bin/false")
    with pytest.raises(kserve_local.KServeUnavailable) as err:
        kserve_local.build(tmp_path / "kv", quiet=True)
    msg = str(err.value)
    assert "\n" not in msg
    assert "cannot build KServe's virtual environment" in msg and "venv exited 1" in msg
    assert str(tmp_path / "kv-build.log") in msg and "make kserve-venv" in msg
    assert not kserve_local.is_built(tmp_path / "kv")


def test_the_server_gets_only_orchbench_s_own_packages_on_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "pp"
    env = kserve_local.environment(folder)
    assert env["PYTHONPATH"] == str(folder) and env["PYTHONNOUSERSITE"] == "1"
    assert sorted(p.name for p in folder.iterdir()) == ["orchbench", "serving"]
    assert (folder / "serving").resolve() == Path(serving.__file__).resolve().parent
    assert (folder / "orchbench").resolve() == Path(orchbench.__file__).resolve().parent
    kserve_local.environment(folder)  # a second arm of the run: the same folder, unchanged
    assert sorted(p.name for p in folder.iterdir()) == ["orchbench", "serving"]
    # by default in orchbench's cache, one folder per source location: never in a run directory
    from serving.cache import cache_dir

    default = Path(kserve_local.environment()["PYTHONPATH"])
    assert default.parent == cache_dir() / "kserve-pythonpath"
    assert (default / "serving").resolve() == Path(serving.__file__).resolve().parent


def test_kserve_s_rest_connections_have_nagle_off() -> None:
    """serving.kserve_server binds its own socket (to keep to 127.0.0.1); asyncio sets TCP_NODELAY
    only on connections of a socket that names IPPROTO_TCP, and without it every answer (headers and
    body written apart by uvicorn) waited ~40 ms for the client's delayed ACK."""
    import asyncio
    import socket

    from serving.kserve_server import _listen
    from serving.runtime import free_port

    async def nodelay_of_an_accepted_connection() -> int:
        sock = _listen("127.0.0.1", free_port())
        got: list[int] = []

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                raw = transport.get_extra_info("socket")
                got.append(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _reader, writer = await asyncio.open_connection(*sock.getsockname())
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.01)
            writer.close()
        return got[0]

    assert asyncio.run(nodelay_of_an_accepted_connection()) == 1
