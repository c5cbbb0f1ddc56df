"""What every step shares: where its artifacts live, the spec, and the platform it runs on.

Artifact paths in the compiled workflow all sit under ARTIFACT_ROOT (/tmp/orchbench): a step reads
its input artifacts from `<root>/in/<name>` and writes its output artifacts to `<root>/out/<name>`.
Argo mounts them there; the local runner points ORCHBENCH_ARTIFACT_ROOT at the task's own folder.
Steps print nothing to stdout: their outputs are files (output parameters and artifacts).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from orchbench.core.arms import ArmName, Transport
from orchbench.core.errors import USER_FACING, ConfigError
from orchbench.core.manifest import inspect
from orchbench.core.platform.base import DeploymentRecord, Platform
from orchbench.core.spec import Spec, spec_from_json
from orchbench.fsio import write_bytes, write_text

ARTIFACT_ROOT = "/tmp/orchbench"
#: A failed step's error record (`record_error`), at the top of the artifact root.
ERROR_FILE = "error.json"


def artifact_root() -> Path:
    return Path(os.environ.get("ORCHBENCH_ARTIFACT_ROOT", ARTIFACT_ROOT))


def in_dir(name: str) -> Path:
    return artifact_root() / "in" / name


def out_dir(name: str) -> Path:
    path = artifact_root() / "out" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def payload_artifact(transport: str, root: str | Path | None = None) -> Path:
    """Where a step finds its transport's payload: the compiled workflow's raw input artifact
    `payload-<transport>` (base64 of the bytes of the spec's payload file)."""
    return Path(root or artifact_root()) / "in" / "payloads" / f"{transport}.b64"


def payload_file(spec: Spec, transport: str) -> tuple[Path, bytes]:
    """The transport's payload from the step's input artifact, decoded into a file of the spec's name
    (load testers read a file), and its bytes."""
    name, data = payload_bytes(spec, transport)
    path = artifact_root() / "work" / "payloads" / transport / name
    write_bytes(path, data)
    return path, data


def payload_bytes(spec: Spec, transport: str) -> tuple[str, bytes]:
    """(the spec's name for the payload, its bytes) from the step's input artifact."""
    path = payload_artifact(transport)
    try:
        data = base64.b64decode(path.read_bytes(), validate=True)
    except FileNotFoundError:
        raise ConfigError(f"input artifact payload-{transport} missing at {path}") from None
    except binascii.Error:
        raise ConfigError(f"input artifact payload-{transport} at {path} is not base64") from None
    if not data:
        raise ConfigError(f"payload {spec.payloads.get(transport)} is empty")  # type: ignore[call-overload]
    return Path(spec.payloads.get(transport, f"{transport}.bin")).name, data  # type: ignore[call-overload]


def log(message: str) -> None:
    print(f"[orchbench] {message}", file=sys.stderr, flush=True)


def load(spec_json: str) -> Spec:
    return spec_from_json(spec_json)


def platform_for(
    spec: Spec, state_dir: str, aa_copy: bool = False, transport: str = "rest", owner: str = ""
) -> Platform:
    """The spec's platform. `transport`: what a KServe / Seldon v2 platform renders `deploy`'s objects
    for (wait, verify and teardown read everything from the record). `owner`: the workflow's uid, so
    a SeldonDeployment is created, replaced and deleted only by the run that owns it."""
    if spec.custom_kind():
        return custom_platform(spec, transport, owner)
    if spec.platform == "endpoints":  # nothing deployed: the arms' own URLs
        from orchbench.core.platform.endpoints import endpoints_platform

        return endpoints_platform(spec, transport)  # type: ignore[arg-type]
    if spec.platform == "local":
        from orchbench.core.platform.local import LocalPlatform

        local = spec.local
        return LocalPlatform(
            Path(state_dir),
            ports=local_ports(spec, aa_copy),
            cpu_pinning=local.cpu_pinning,
            inject_delay_ms=local.inject_delay_ms,
            model_threads=local.model_threads,
            shared_model=local.shared_model,
            impl={
                "rest": local.orchestrator_rest_impl,
                "grpc": local.orchestrator_grpc_impl,
                "model_grpc": local.model_grpc_impl,
            },
            endpoint_extras=spec.endpoint_extras(),
            model_server=local.model_server,
        )
    from orchbench.core.platform.kubernetes import platform_from_spec

    return platform_from_spec(spec, owner=owner)


def custom_platform(spec: Spec, transport: str = "rest", owner: str = "") -> Any:
    """kubernetes.kind kserve / seldon2: KServePlatform / Seldon2Platform with the spec's options for
    `transport` (and `owner`, the workflow's uid, on every object), in-cluster inside an Argo pod,
    else from the kubeconfig."""
    from orchbench.core.platform.k8s_common import config_from_spec
    from orchbench.core.platform.k8s_kinds import kserve_options, seldon2_options
    from orchbench.core.platform.kserve import KServePlatform
    from orchbench.core.platform.seldon2 import Seldon2Platform

    config = config_from_spec(spec)
    if spec.custom_kind() == "kserve":
        platform = KServePlatform.from_environment(config)
        platform.options = kserve_options(spec, transport, owner)
    else:
        platform = Seldon2Platform.from_environment(config)
        platform.options = seldon2_options(spec, transport, owner)
    return platform


def local_ports(spec: Spec, aa_copy: bool = False) -> Any:
    from orchbench.core.platform.local import LocalPorts

    p = spec.local.ports
    if aa_copy:  # the A/A copy of "without" listens where "with" would
        return LocalPorts(
            with_orchestrator=p.without, without_orchestrator=p.with_, internal=p.model_behind_orchestrator
        )
    return LocalPorts(
        with_orchestrator=p.with_, without_orchestrator=p.without, internal=p.model_behind_orchestrator
    )


def record_path(state_dir: str, transport: Transport, arm: ArmName) -> Path:
    return Path(state_dir) / "deploy" / f"{transport}-{arm}.json"


def record_from_json(text: str) -> DeploymentRecord:
    return DeploymentRecord(**json.loads(text))


def deployment_name(spec: Spec, transport: Transport, arm: ArmName) -> str:
    base = inspect(spec.manifest_document()).name
    return f"{base}-{transport}-{arm}"


def error_file(root: str | Path | None = None) -> Path:
    """Where a failed step records its error for whoever runs it (the local runner reads it)."""
    return Path(root or artifact_root()) / ERROR_FILE


def record_error(exc: BaseException, exit_code: int, unexpected: bool) -> None:
    """One JSON line: the error's message, the step's exit code, the error's class name, and whether
    it was unexpected (a bug, not an error raised on purpose). Written atomically; a step that cannot
    write it still exits with its code and its line on stderr."""
    record = {
        "error": type(exc).__name__,
        "exit_code": exit_code,
        "message": str(exc),
        "unexpected": unexpected,
    }
    with contextlib.suppress(OSError):
        write_text(error_file(), json.dumps(record, sort_keys=True) + "\n")


def step(fn: Any) -> Any:
    """The one error wrapper of every step function: an error raised on purpose (USER_FACING) becomes
    one line on stderr and its exit code; anything else (a bug) its traceback, one line and exit 1.
    Either way the error is recorded in `error_file()` (`record_error`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(OSError):
            error_file().unlink(missing_ok=True)  # a record left by an earlier attempt is not ours
        try:
            return fn(*args, **kwargs)
        except USER_FACING as exc:
            code = int(getattr(exc, "exit_code", 1))
            record_error(exc, code, unexpected=False)
            print(f"[orchbench] error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(code) from None
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            record_error(exc, 1, unexpected=True)
            print(f"[orchbench] error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return wrapper
