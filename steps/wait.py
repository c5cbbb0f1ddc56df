"""Step: wait until an arm answers, then check it is what it claims (orchestrator on path or not)."""

import json
from dataclasses import replace
from typing import Annotated

from hera.workflows import Parameter

from orchbench.core.platform.k8s_arms import ArmTarget
from orchbench.core.platform.k8s_kinds import endpoint_dict
from steps.common import load, log, platform_for, record_from_json, step


@step
def wait(spec: str, state_dir: str, record: str) -> Annotated[str, Parameter(name="endpoint")]:
    s = load(spec)
    rec = record_from_json(record)
    platform = platform_for(s, state_dir, transport=rec.transport)
    local_timeout = s.platform in ("local", "endpoints")  # endpoints: local.ready_timeout_s too
    timeout = s.local.ready_timeout_s if local_timeout else s.kubernetes.ready_timeout_s
    endpoint = platform.wait(rec, timeout)
    evidence = platform.verify_arm(rec, endpoint)
    if isinstance(
        endpoint, ArmTarget
    ):  # KServe / Seldon v2: the load tester's URL / target, Host, headers (seldon-model)
        out = endpoint_dict(endpoint)
        out["evidence"] = evidence.to_dict()
        log(f"{rec.name} ready at {endpoint.host}:{endpoint.port}; arm {rec.arm}: {evidence.how}")
        return json.dumps(out, sort_keys=True)
    if rec.details.get("aa_copy"):  # A/A: a verified "without" deployment stands in for "with"
        endpoint = replace(endpoint, arm="with")
        evidence = replace(evidence, how=f"A/A copy of 'without': {evidence.how}")
    log(f"{rec.name} ready at {endpoint.host}:{endpoint.port}; arm {endpoint.arm}: {evidence.how}")
    out = endpoint.to_dict()
    out["evidence"] = evidence.to_dict()
    return json.dumps(out, sort_keys=True)
