"""Step: deploy one arm (the SeldonDeployment with or without the orchestrator) and record it."""

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, cast

from hera.workflows import Parameter

from orchbench.core.arms import ArmName, Transport
from orchbench.core.manifest import render
from steps.common import deployment_name, load, log, platform_for, record_path, step

if TYPE_CHECKING:  # the cluster image never needs the local platform
    from orchbench.core.platform.local import LocalPlatform


@step
def deploy(spec: str, state_dir: str, transport: str, arm: str) -> Annotated[str, Parameter(name="record")]:
    s = load(spec)
    t, a = cast(Transport, transport), cast(ArmName, arm)
    platform = platform_for(s, state_dir)
    aa_copy = s.platform == "local" and s.local.aa_mode and a == "with"
    alias = aa_copy and s.local.shared_model
    if aa_copy and not alias:
        # A/A: the "with" arm is the "without" deployment again (shared model: the same endpoint;
        # otherwise a second, identical deployment on the "with" port)
        a = "without"
        platform = platform_for(s, state_dir, aa_copy=True)
    manifest = render(s.manifest_document(), t, a, name=deployment_name(s, t, cast(ArmName, arm)))
    path = record_path(state_dir, t, cast(ArmName, arm))
    if alias:
        # A/A with a shared model: the "with" arm is the "without" endpoint itself
        record = cast("LocalPlatform", platform).alias(manifest, path)
    else:
        record = platform.deploy(manifest, a, path)
    if aa_copy:
        record.details["aa_copy"] = True
        record.save(path)
    log(f"deployed {record.name} ({transport}, {arm})")
    return json.dumps(asdict(record), sort_keys=True)
