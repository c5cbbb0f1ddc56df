"""Step: wait until an arm answers, then check it is what it claims (orchestrator on path or not)."""


import json
from typing import Annotated

from hera.workflows import Parameter

from steps.common import load, log, platform_for, record_from_json


def wait(spec: str, state_dir: str, record: str) -> Annotated[str, Parameter(name="endpoint")]:
    s = load(spec)
    rec = record_from_json(record)
    platform = platform_for(s, state_dir)
    timeout = s.local.ready_timeout_s if s.platform == "local" else s.kubernetes.ready_timeout_s
    endpoint = platform.wait(rec, timeout)
    evidence = platform.verify_arm(rec, endpoint)
    if s.local.aa_mode and s.platform == "local":
        evidence_arm = rec.arm
    else:
        evidence_arm = evidence.arm
    log(f"{rec.name} ready at {endpoint.host}:{endpoint.port}; arm {evidence_arm}: {evidence.how}")
    out = endpoint.to_dict()
    out["evidence"] = evidence.to_dict()
    return json.dumps(out, sort_keys=True)
