"""Steps: tear one arm down; and the exit handler that tears everything down and untaints."""

from orchbench.core.arms import ArmName, Transport
from orchbench.core.errors import OrchbenchError, PlatformError
from orchbench.core.platform.base import DeploymentRecord
from steps.common import (
    custom_platform,
    deployment_name,
    load,
    log,
    platform_for,
    record_from_json,
    record_path,
    step,
)


@step
def teardown(spec: str, state_dir: str, record: str, owner: str = "") -> None:
    s = load(spec)
    rec = record_from_json(record)
    platform_for(s, state_dir, owner=owner).teardown(rec)
    log(f"torn down {rec.name}")


def _known_record(
    spec_json: str, state_dir: str, transport: Transport, arm: ArmName
) -> DeploymentRecord | None:
    s = load(spec_json)
    path = record_path(state_dir, transport, arm)
    if path.exists():
        return DeploymentRecord.load(path)
    if s.custom_kind():  # KServe / Seldon v2: the record (its `objects`) rendered again, as deploy did
        platform = custom_platform(s, transport)
        record: DeploymentRecord = platform.plan(s.manifest_document(), arm)[0]
        return record
    if s.platform == "kubernetes":  # deterministic names: a record can be rebuilt without the file
        return DeploymentRecord(
            "kubernetes",
            deployment_name(s, transport, arm),
            transport,
            arm,
            "",
            {"namespace": s.kubernetes.namespace},
        )
    return None


@step
def cleanup(spec: str, state_dir: str, workflow_status: str = "", owner: str = "") -> None:
    """Exit handler: runs whatever happened. Tears down every arm it can find, then releases the
    taints of `owner` (the workflow's id, as the taint step got it); other runs' taints stay."""
    s = load(spec)
    platform = platform_for(s, state_dir, owner=owner)
    failures = []
    for transport in s.transports:
        for arm in s.arm_names():
            rec = _known_record(spec, state_dir, transport, arm)
            if rec is None:
                continue
            try:
                platform.teardown(rec)
            except OrchbenchError as exc:
                failures.append(f"{rec.name}: {exc}")
    try:
        platform.untaint(owner)
    except OrchbenchError as exc:
        failures.append(f"untaint: {exc}")
    log(
        f"cleanup after workflow status {workflow_status or 'unknown'}: "
        f"{'done' if not failures else 'FAILED: ' + '; '.join(failures)}"
    )
    if failures:
        raise PlatformError(f"cleanup: {'; '.join(failures)}")
