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
    spec_json: str, state_dir: str, transport: Transport, arm: ArmName, owner: str = ""
) -> DeploymentRecord | None:
    s = load(spec_json)
    path = record_path(state_dir, transport, arm)
    if path.exists():
        return DeploymentRecord.load(path)
    if s.custom_kind():  # KServe / Seldon v2: the record (its `objects`) rendered again, as deploy did
        platform = custom_platform(s, transport, owner)
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
    taints of `owner` (the workflow's id, as the taint step got it); other runs' taints stay. For
    KServe / Seldon v2 with an owner, "every arm" is every object labelled orchbench.io/owner=<owner>
    in the namespace (also one whose deploy step died before it wrote its record)."""
    s = load(spec)
    platform = platform_for(s, state_dir, owner=owner)
    failures = []
    by_owner = bool(s.custom_kind() and owner)
    if by_owner:  # KServe / Seldon v2: whatever carries this run's uid, found by its label
        try:
            gone = custom_platform(s, owner=owner).cleanup_owned(owner)
            log(f"deleted what orchbench.io/owner={owner} labels: {', '.join(gone) or 'nothing'}")
        except OrchbenchError as exc:
            failures.append(f"objects of owner {owner}: {exc}")
    for transport in () if by_owner else s.transports:
        for arm in s.arm_names():
            rec = _known_record(spec, state_dir, transport, arm, owner)
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
