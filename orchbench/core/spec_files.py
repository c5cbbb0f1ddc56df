"""The files around an experiment spec: which spec file a user means (`find_spec`), and the files the
spec names, read and checked before anything starts (`check_inputs`). `orchbench.core.spec.load_spec`
uses both."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchbench.core.errors import ConfigError
from orchbench.core.paths import shipped_spec, shipped_spec_names
from orchbench.core.payload_check import check_payload
from orchbench.core.platform.k8s_kinds import check_renders, check_tensor_payload
from orchbench.core.spec_sections import DEFAULT_SPEC

if TYPE_CHECKING:
    from orchbench.core.spec import Spec


def find_spec(name: str | Path | None) -> Path:
    """The spec file a user means: none -> the shipped default; a short name (`seed`, `default`) -> the
    shipped spec of that name unless a file of that name exists here; anything else -> that path."""
    if name is None or str(name) == "":
        return DEFAULT_SPEC
    path = Path(name).expanduser()
    if path.exists():
        return path
    shipped = shipped_spec(str(name))
    if shipped is not None:
        return shipped
    if "/" not in str(name) and not str(name).endswith((".yaml", ".yml")):
        raise ConfigError(
            f"{name}: no such spec file, and no shipped spec of that name "
            f"(shipped: {', '.join(shipped_spec_names())})"
        )
    return path


def check_inputs(spec: Spec, source: str = "spec") -> None:
    """The files a spec names, read and checked before anything starts: the SeldonDeployment
    manifest (`orchbench.core.manifest.load_manifest`) and the payload of every transport it runs."""
    try:
        document = spec.manifest_document()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        where = spec.resolve(spec.manifest) if isinstance(spec.manifest, str) else "inline"
        raise ConfigError(f"{source}: manifest {where}: not readable ({reason})") from None
    if spec.custom_kind():
        try:  # the renderings deploy would make: the same hop in two arms is refused here, in one line
            check_renders(spec, document)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    for transport in spec.transports:
        if not spec.payloads.get(transport):
            raise ConfigError(f"{source}: payloads.{transport}: no payload for transport {transport}")
        payload = spec.resolve(spec.payloads[transport])
        if not payload.exists():
            raise ConfigError(f"{source}: payloads.{transport}: file {payload} not found")
        if spec.custom_kind():  # a third-party runtime's model: any v2 tensors, not the flowers image
            check_tensor_payload(payload, transport)
        else:
            check_payload(payload, transport, spec.protocol)
    if spec.platform == "endpoints" and spec.arms is None:
        raise ConfigError(f"{source}: platform endpoints needs arms: (each with its url and/or grpc)")
    for a in spec.arms or []:
        ca = a.tls.ca_file if a.tls else None
        if ca and not spec.resolve(ca).is_file():
            raise ConfigError(f"{source}: arms.{a.name}.tls.ca_file: file {spec.resolve(ca)} not found")
