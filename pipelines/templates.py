"""The workflow's script templates, one per step: the step's function (Hera's runner), the steps
image, placement on a cluster, and the inputs and outputs each passes on (the payloads inline as raw
artifacts, the floor, the load tests' raw output, the results, the report). pipelines.benchmark
wires them into the DAG.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from hera.workflows import Artifact, NoneArchiveStrategy, RawArtifact, S3Artifact, Script

from orchbench.core.errors import ConfigError
from orchbench.core.spec import Spec
from steps.common import ARTIFACT_ROOT, payload_artifact
from steps.compare import compare
from steps.deploy import deploy
from steps.floor import floor
from steps.loadtest import loadtest, loadtest_arms
from steps.loadtest_stage import loadtest_stage, loadtest_stage_arm
from steps.report import gate, report
from steps.taint import taint
from steps.teardown import cleanup, teardown
from steps.wait import wait

Kind = Literal["workflow", "template", "cron"]
KINDS: tuple[Kind, ...] = ("workflow", "template", "cron")


#: Payload bytes the compiled workflow may carry, all transports together. The payloads travel inline
#: (base64 raw artifacts), and a Workflow is one Kubernetes object stored in etcd, whose default
#: request limit is 1.5 MiB (etcd --max-request-bytes); this leaves room for the rest of the object.
MAX_EMBEDDED_PAYLOAD_BYTES = 512 * 1024


def payload_artifacts(spec: Spec) -> list[RawArtifact]:
    """Each transport's payload, read from the user's file now, carried inline as base64 so no step
    reads the submitting machine's files (base64: raw artifact data is text, gRPC payloads binary)."""
    out, total = [], 0
    for transport in spec.transports:
        path = spec.resolve(spec.payloads[transport])
        data = path.read_bytes()
        total += len(data)
        if total > MAX_EMBEDDED_PAYLOAD_BYTES:
            raise ConfigError(
                f"payloads.{transport}: {path} makes {total:,} payload bytes, more than the "
                f"{MAX_EMBEDDED_PAYLOAD_BYTES:,} a workflow can carry inline (the Workflow object is "
                "stored in etcd, whose default request limit is 1.5 MiB)"
            )
        out.append(
            RawArtifact(
                name=f"payload-{transport}",
                path=str(payload_artifact(transport, root=ARTIFACT_ROOT)),
                data=base64.b64encode(data).decode("ascii"),
            )
        )
    return out


def _art(direction: str, name: str) -> str:
    return f"{ARTIFACT_ROOT}/{direction}/{name}"


def _placement(spec: Spec, role: str) -> dict[str, Any]:
    """Tolerations and node selection for pods on a cluster (load tester on its own tainted node)."""
    if spec.platform != "kubernetes":
        return {}
    from orchbench.core.platform.kubernetes import loadtester_placement, steps_placement

    return dict(loadtester_placement(spec) if role == "loadtester" else steps_placement(spec))


def _script(spec: Spec, fn: Any, name: str, role: str = "control", **kw: Any) -> Script:
    return Script(
        name=name,
        source=fn,
        constructor="runner",
        image=spec.argo.image,
        image_pull_policy=spec.argo.image_pull_policy,
        command=["python"],
        **_placement(spec, role),
        **kw,
    )


def templates(spec: Spec, kind: Kind, load_tasks: list[str]) -> dict[str, Script]:
    """The templates of `spec`'s workflow by role, in the order the workflow lists them; `load_tasks`
    names the load-test tasks whose raw output compare takes in. No `floor` template when the spec
    switches the floor off (`floor: false`)."""
    payloads = payload_artifacts(spec)
    out = {"taint": _script(spec, taint, "taint")}
    if spec.floor:
        out["floor"] = _script(
            spec,
            floor,
            "floor",
            role="loadtester",
            inputs=[p for p in payloads if p.name == "payload-rest"],
            outputs=[Artifact(name="floor", path=_art("out", "floor"))],
        )
    out |= {
        "deploy": _script(spec, deploy, "deploy"),
        "wait": _script(spec, wait, "wait"),
        "loadtest": _script(
            spec,
            *loadtest_step(spec),
            role="loadtester",
            inputs=list(payloads),
            outputs=[Artifact(name="raw", path=_art("out", "raw"))],
        ),
        "teardown": _script(spec, teardown, "teardown"),
        "compare": _script(
            spec,
            compare,
            "compare",
            inputs=[Artifact(name="floor", path=_art("in", "floor"), optional=True)]
            + [Artifact(name=f"raw-{x}", path=_art("in", f"raw/{x}")) for x in load_tasks],
            outputs=[_results_artifact(kind)],
        ),
        "report": _script(
            spec,
            report,
            "report",
            inputs=[Artifact(name="results", path=_art("in", "results"))],
            outputs=[Artifact(name="report", path=_art("out", "report"))],
        ),
        "cleanup": _script(spec, cleanup, "cleanup"),
    }
    if kind == "cron":
        out["gate"] = _script(
            spec,
            gate,
            "gate",
            inputs=[
                S3Artifact(
                    name="dataset", path=_art("in", "dataset"), key="{{workflow.parameters.dataset-key}}"
                )
            ],
        )
    return out


def loadtest_step(spec: Spec) -> tuple[Any, str]:
    """The load-test step and its template's name."""
    request = spec.interleave() == "request"
    if spec.stage_plan():
        return (loadtest_stage, "loadtest-stage") if request else (loadtest_stage_arm, "loadtest-stage-arm")
    return (loadtest_arms, "loadtest-arms") if request else (loadtest, "loadtest")


def _results_artifact(kind: Kind) -> Artifact:
    if kind != "cron":
        return Artifact(name="results", path=_art("out", "results"))
    # Nightly runs land under a date partition of the artifact repository: the trend dataset.
    return S3Artifact(
        name="results",
        path=_art("out", "results"),
        key="{{workflow.parameters.dataset-key}}/date={{workflow.creationTimestamp.Y}}-"
        "{{workflow.creationTimestamp.m}}-{{workflow.creationTimestamp.d}}/{{workflow.name}}",
        archive=NoneArchiveStrategy(),
    )
