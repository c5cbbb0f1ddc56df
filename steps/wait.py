"""Step: wait until an arm answers, then check it is what it claims (orchestrator on path or not)."""

import json
from dataclasses import replace
from typing import Annotated

from hera.workflows import Parameter

from steps.common import load, log, platform_for, record_from_json, step


@step
def wait(spec: str, state_dir: str, record: str) -> Annotated[str, Parameter(name="endpoint")]:
    s = load(spec)
    rec = record_from_json(record)
    platform = platform_for(s, state_dir)
    timeout = s.local.ready_timeout_s if s.platform == "local" else s.kubernetes.ready_timeout_s
    endpoint = platform.wait(rec, timeout)
    evidence = platform.verify_arm(rec, endpoint)
    if rec.details.get("aa_copy"):  # A/A: a verified "without" deployment stands in for "with"
        endpoint = replace(endpoint, arm="with")
        evidence = replace(evidence, how=f"A/A copy of 'without': {evidence.how}")
    log(f"{rec.name} ready at {endpoint.host}:{endpoint.port}; arm {endpoint.arm}: {evidence.how}")
    out = endpoint.to_dict()
    out["evidence"] = evidence.to_dict()
    return json.dumps(out, sort_keys=True)
