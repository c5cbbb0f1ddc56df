"""The benchmark pipeline as a Hera builder: one spec in, an Argo Workflow / WorkflowTemplate /
CronWorkflow out. The local runner executes the very dict this builds.

DAG: taint -> floor -> per transport: deploy + wait (+ verify) each arm, the baseline first -> load-test
blocks -> teardown -> compare -> report [-> gate, cron only]; with `floor: false` no floor task (taint
leads straight to the first deploy, compare gets no floor artifact). A block is one load test whose k6
rotates all arms request by request (interleave `request`; its `endpoints` parameter is the JSON list
of the wait tasks' `endpoint` outputs), or one load test per arm in a recorded random order
(interleave `block`).
The exit handler tears everything down and untaints whatever happened. The templates the tasks run
are pipelines.templates'.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from hera.workflows import DAG, CronWorkflow, Parameter, Script, Task, Workflow, WorkflowTemplate

from orchbench.core.spec import Spec
from pipelines.templates import KINDS, Kind, templates
from steps.common import ARTIFACT_ROOT

STATE_DIR = f"{ARTIFACT_ROOT}/state"
SPEC = "{{workflow.parameters.spec}}"
STATE = "{{workflow.parameters.state-dir}}"
#: The workflow's own id: the taints a run holds on a cluster carry it, and its exit handler releases
#: only those (k8s_nodes.py), so two experiments on one cluster never untaint each other.
OWNER = "{{workflow.uid}}"


_COMPACT: dict[str, Any] = {"sort_keys": True, "separators": (",", ":")}


def embedded(spec: Spec) -> Spec:
    """The spec as the workflow carries it: the manifest document inline instead of a path on the
    submitting machine (payloads travel as raw artifacts; their paths stay, for provenance)."""
    return spec.model_copy(update={"manifest": spec.manifest_document()})


def _owned(spec: Spec) -> dict[str, str]:
    """The workflow's uid for the steps that create or delete objects on a cluster (SeldonDeployments,
    KServe's and Seldon v2's), so a run never replaces or deletes another run's (`orchbench.io/owner`);
    other platforms need none."""
    return {"owner": OWNER} if spec.platform == "kubernetes" else {}


class LoadTask(NamedTuple):
    """One load-test task: its name, transport, block, arms in order, and (load stages) the stage and
    which of the stage's generators it is. Tasks of one `wave` run in parallel (generators)."""

    name: str
    transport: str
    block: int
    arms: list[str]
    stage: str | None = None
    generator: int = 0
    wave: int = 0


def _rotated(arms: list[str], g: int) -> list[str]:
    """Generator g's own arm order: the block's, rotated by g (VU n starts at arm (n - 1 + g) mod N)."""
    k = g % len(arms)
    return arms[k:] + arms[:k]


def _load_tasks(spec: Spec) -> list[LoadTask]:
    """The load-test tasks in execution order: one paired task per block (interleave request), else
    one task per block and arm; with load stages, per stage (in plan order) and block, and with
    `load.generators` N, N parallel tasks per stage and block (one wave)."""
    order = spec.block_order()
    request = spec.interleave() == "request"
    stages = spec.stage_plan()
    if not stages:
        if request:
            return [
                LoadTask(f"load-{t}-b{b}", t, b, list(arms), wave=i)
                for i, (t, (b, arms)) in enumerate((t, x) for t in spec.transports for x in enumerate(order))
            ]
        return [
            LoadTask(f"load-{t}-b{b}-{arm}", t, b, [arm], wave=i)
            for i, (t, b, arm) in enumerate(
                (t, b, arm) for t in spec.transports for b, arms in enumerate(order) for arm in arms
            )
        ]
    n = spec.load.generators
    out: list[LoadTask] = []
    wave = 0
    for t in spec.transports:
        for st in stages:
            slug = st.id.replace(".", "p")  # a task name has no '.' (Argo's {{tasks.NAME...}})
            for b, arms in enumerate(order):
                if request:
                    for g in range(n):
                        name = f"load-{t}-{slug}-b{b}" + (f"-g{g}" if n > 1 else "")
                        out.append(LoadTask(name, t, b, _rotated(list(arms), g), st.id, g, wave))
                    wave += 1
                else:
                    for arm in arms:
                        out.append(LoadTask(f"load-{t}-{slug}-b{b}-{arm}", t, b, [arm], st.id, 0, wave))
                        wave += 1
    return out


def _after(before: list[Task], task: Task) -> None:
    """`task` depends on every task in `before` (Argo: depends "a && b")."""
    for b in before:
        b >> task


def _replicate(
    spec: Spec, t: dict[str, Script], transport: str, r: int, previous: list[Task], loads: list[Task]
) -> list[Task]:
    """One deployment replicate of one transport: deploy + wait each arm (the baseline first), the
    replicate's load-test blocks, teardown. Appends its load tasks to `loads`; returns its teardowns
    (what the next phase waits for). Task names carry `-r<k>` only with two or more replicates."""
    sfx = f"-r{r}" if spec.replicates > 1 else ""
    waits: dict[str, Task] = {}
    deploys: dict[str, Task] = {}
    # the baseline first: locally every other arm's hop fronts the baseline's model process (the
    # A/A copy, which fronts nothing, first in odd replicates: Spec.deploy_order)
    arm_names = spec.deploy_order(r)
    for i, arm in enumerate(arm_names):
        dep = Task(
            name=f"deploy-{transport}-{arm}{sfx}",
            template=t["deploy"],
            arguments={
                "spec": SPEC,
                "state_dir": STATE,
                "transport": transport,
                "arm": arm,
                **_owned(spec),
            },
        )
        _after(previous if i == 0 else [waits[arm_names[i - 1]]], dep)
        wt = Task(
            name=f"wait-{transport}-{arm}{sfx}",
            template=t["wait"],
            arguments={"spec": SPEC, "state_dir": STATE, "record": dep.get_parameter("record").value},
        )
        dep >> wt
        deploys[arm], waits[arm] = dep, wt
    compared = spec.compared_arms()
    chain: list[Task] = [waits[a] for a in [*compared, spec.baseline]]
    wave: list[Task] = []
    current = None
    for lt in _load_tasks(spec):
        if lt.transport != transport or spec.replicate_of(lt.block) != r:
            continue
        if lt.wave != current:  # a new wave waits for the whole previous one
            chain, wave, current = wave or chain, [], lt.wave
        args: dict[str, Any] = {"spec": SPEC, "state_dir": STATE, "transport": transport}
        if lt.stage is not None:
            args["stage"] = lt.stage
        if len(lt.arms) > 1:  # one JSON list of every arm's endpoint, in the block's order
            listed = ",".join(str(waits[a].get_parameter("endpoint").value) for a in lt.arms)
            args.update(block=str(lt.block), endpoints=f"[{listed}]")
            if lt.stage is not None:
                args["generator"] = str(lt.generator)
                if spec.platform == "kubernetes" and lt.generator == 0:
                    # the deploy records, by which the step finds each arm's pods for the metrics API
                    recs = ",".join(str(deploys[a].get_parameter("record").value) for a in lt.arms)
                    args["records"] = f"[{recs}]"
        else:
            args.update(
                arm=lt.arms[0],
                block=str(lt.block),
                endpoint=waits[lt.arms[0]].get_parameter("endpoint").value,
            )
        task = Task(name=lt.name, template=t["loadtest"], arguments=args)
        _after(chain, task)
        wave.append(task)
        loads.append(task)
    chain = wave or chain
    teardowns = []
    for arm in [*compared, spec.baseline]:
        td = Task(
            name=f"teardown-{transport}-{arm}{sfx}",
            template=t["teardown"],
            arguments={
                "spec": SPEC,
                "state_dir": STATE,
                "record": deploys[arm].get_parameter("record").value,
                **_owned(spec),
            },
        )
        _after(chain, td)
        teardowns.append(td)
    return teardowns


def _dag(spec: Spec, t: dict[str, Script], kind: Kind) -> None:
    with DAG(name="benchmark"):
        tnt = Task(
            name="taint", template=t["taint"], arguments={"spec": SPEC, "state_dir": STATE, "owner": OWNER}
        )
        flr = None
        previous: list[Task] = [tnt]
        if spec.floor:  # `floor: false`: no floor task, taint leads to the first deploy
            flr = Task(name="floor", template=t["floor"], arguments={"spec": SPEC, "state_dir": STATE})
            tnt >> flr
            previous = [flr]
        loads_by_transport: dict[str, list[Task]] = {}
        for transport in spec.transports:
            loads: list[Task] = []
            # deployment replicates: every arm deployed afresh per replicate, one after the other
            for r in range(spec.replicates):
                previous = _replicate(spec, t, transport, r, previous, loads)
            loads_by_transport[transport] = loads
        all_loads = [task for ts in loads_by_transport.values() for task in ts]
        cmp_args: list[Any] = [
            Parameter(name="spec", value=SPEC),
            Parameter(name="results_dir", value="{{workflow.parameters.results-dir}}"),
            Parameter(name="run_id", value="{{workflow.name}}"),
            *([flr.get_artifact("floor").with_name("floor")] if flr is not None else []),
            *[task.get_artifact("raw").with_name(f"raw-{task.name}") for task in all_loads],
        ]
        cmp = Task(name="compare", template=t["compare"], arguments=cmp_args)
        _after(previous, cmp)
        rep = Task(
            name="report",
            template=t["report"],
            arguments=[
                Parameter(name="results_dir", value="{{workflow.parameters.results-dir}}"),
                cmp.get_artifact("results").with_name("results"),
            ],
        )
        cmp >> rep
        if kind == "cron":
            gt = Task(
                name="gate",
                template=t["gate"],
                arguments={
                    "threshold_rest_ms": ""
                    if spec.thresholds.rest_ms is None
                    else str(spec.thresholds.rest_ms),
                    "threshold_grpc_ms": ""
                    if spec.thresholds.grpc_ms is None
                    else str(spec.thresholds.grpc_ms),
                },
            )
            rep >> gt
    with DAG(name="exit-handler"):
        Task(
            name="cleanup",
            template=t["cleanup"],
            arguments={
                "spec": SPEC,
                "state_dir": STATE,
                "workflow_status": "{{workflow.status}}",
                "owner": OWNER,
            },
        )


def build(spec: Spec, kind: Kind = "workflow") -> Workflow:
    """The pipeline for `spec` as a Hera object of the requested kind."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    params = [
        Parameter(
            name="spec",
            value=json.dumps(embedded(spec).to_json_dict(), **_COMPACT),
        ),
        Parameter(name="state-dir", value=STATE_DIR),
        Parameter(name="results-dir", value=""),
        Parameter(name="dataset-key", value=spec.argo.dataset_key),
    ]
    base: dict[str, Any] = {
        "entrypoint": "benchmark",
        "on_exit": "exit-handler",
        "namespace": spec.argo.namespace,
        "service_account_name": spec.argo.service_account,
        "arguments": params,
        "labels": {"app.kubernetes.io/name": "orchbench", "orchbench.io/experiment": spec.name},
        "pod_gc": None,
        # one task at a time, but the N load generators of a stage's block together
        "parallelism": max(1, spec.load.generators),
    }
    base = {k: v for k, v in base.items() if v is not None}
    wf: Workflow
    if kind == "workflow":
        wf = Workflow(generate_name=f"orchbench-{spec.name}-", **base)
    elif kind == "template":
        wf = WorkflowTemplate(name=f"orchbench-{spec.name}", **base)
    else:
        wf = CronWorkflow(
            name=f"orchbench-{spec.name}-nightly",
            schedules=[spec.argo.schedule],
            timezone=spec.argo.timezone,
            concurrency_policy="Forbid",
            starting_deadline_seconds=3600,
            **base,
        )
    with wf:
        _dag(spec, templates(spec, kind, [lt.name for lt in _load_tasks(spec)]), kind)
    return wf


def compile_dict(spec: Spec, kind: Kind = "workflow") -> dict[str, Any]:
    return build(spec, kind).to_dict()
