"""Step: deploy one arm and record it: on a cluster the SeldonDeployment with or without the
orchestrator; locally the arm's hop (the model server, the reference orchestrator, nginx or HAProxy
in front of the baseline's model), on the arm's port."""

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, cast

from hera.workflows import Parameter

from orchbench.core.arms import Transport
from orchbench.core.manifest import render
from steps.common import deployment_name, load, log, platform_for, record_path, step

if TYPE_CHECKING:  # the cluster image never needs the local platform
    from orchbench.core.platform.local import LocalPlatform


@step
def deploy(
    spec: str, state_dir: str, transport: str, arm: str, owner: str = ""
) -> Annotated[str, Parameter(name="record")]:
    s = load(spec)
    t, a = cast(Transport, transport), arm
    definition = s.arm(arm)  # refuses an arm the spec does not name
    path = record_path(state_dir, t, arm)
    if s.custom_kind():  # KServe / Seldon v2: the arm's objects rendered from the one manifest
        custom = platform_for(s, state_dir, transport=t, owner=owner)
        record = custom.deploy(s.manifest_document(), arm, path)
        log(f"deployed {record.name} ({transport}, {arm}: {s.custom_kind()})")
        return json.dumps(asdict(record), sort_keys=True)
    if s.platform == "endpoints":  # nothing deployed: the arm's target is recorded
        record = platform_for(s, state_dir, transport=t).deploy({}, arm, path)
        log(f"recorded {record.name} ({transport}, {arm}: endpoints)")
        return json.dumps(asdict(record), sort_keys=True)
    platform = platform_for(s, state_dir, owner=owner)
    if s.platform == "local" and s.arms is not None:
        local = cast("LocalPlatform", platform)
        hop = definition.local_hop()
        manifest = render(
            s.manifest_document(),
            t,
            "without" if hop == "model" else "with",
            name=deployment_name(s, t, arm),
        )
        verify = [v.model_dump() for v in definition.verify]
        if hop == "model" and not definition.baseline and not definition.aa:
            # hop model without aa: the baseline's endpoint under a second name (aa: its own process)
            record = local.alias(manifest, path, arm=arm)
            record.details["verify"] = verify
            record.save(path)
        else:
            record = local.deploy(
                manifest,
                arm,
                path,
                hop=hop,
                port=s.arm_ports()[arm],
                verify=verify,
                inject_delay_ms=definition.inject_delay_ms,
            )
        log(f"deployed {record.name} ({transport}, {arm}: {hop})")
        return json.dumps(asdict(record), sort_keys=True)
    aa_copy = s.platform == "local" and s.local.aa_mode and a == "with"
    alias = aa_copy and s.local.shared_model
    if aa_copy and not alias:
        # A/A: the "with" arm is the "without" deployment again (shared model: the same endpoint;
        # otherwise a second, identical deployment on the "with" port)
        a = "without"
        platform = platform_for(s, state_dir, aa_copy=True)
    manifest = render(s.manifest_document(), t, a, name=deployment_name(s, t, arm))
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
