"""Step: isolate the load tester from the model (node taints on a cluster, CPU pinning locally)."""

import json
from typing import Annotated

from hera.workflows import Parameter

from steps.common import load, log, platform_for, step


@step
def taint(spec: str, state_dir: str, owner: str = "") -> Annotated[str, Parameter(name="plan")]:
    """`owner`: the workflow's id (`{{workflow.uid}}`); the taints it holds are released by the exit
    handler with the same id, never another run's."""
    s = load(spec)
    plan = platform_for(s, state_dir).taint(owner)
    log(f"taint: {json.dumps(plan, sort_keys=True)}")
    return json.dumps(plan, sort_keys=True)
