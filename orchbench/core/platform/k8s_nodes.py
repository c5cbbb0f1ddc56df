"""Node selection, and idempotent tainting/untainting of the load-tester and model nodes.

How `untaint` knows what to undo: `taint` writes a JSON annotation `orchbench.io/tainted` on every node
it touches, holding the node's state *before orchbench* for what orchbench manages:

    {"role": "model", "taint": {"key": "model", "value": "active", "effect": "NoSchedule"},
     "previous_taints": [...taints with the same key that were there before...],
     "previous_role_label": null}

The record lives on the node itself (not in a file) because each Argo step is its own pod: the untaint
step (usually an exit handler) must find it without any handover, and a step that crashed leaves a
record that the exit handler (or an `untaint` by hand with the workflow's id) still honours.

Which run holds the taint: a second annotation `orchbench.io/taint-owners` lists (JSON, sorted) the
ids of the workflows that tainted the node (`{{workflow.uid}}`, passed to the taint and cleanup steps).
Two experiments on one cluster may share a node: the second joins the owners, and the node's taint is
removed only when its last owner untaints. A run never removes a taint another run still holds, and a
run that wants a node another run holds in another role or with another taint is refused before any
node is patched. (A record without the owners annotation, written by an orchbench before owners
existed, belongs to no live run: any `untaint` restores it, as it did then.)

- `taint` is idempotent. The node's state before orchbench (the "baseline") is recomputed from the
  current state and the record, so running it twice changes nothing the second time; a taint with the
  same key but another value or effect is replaced (and restored by `untaint`); a node that already had
  exactly the wanted taint before orchbench came keeps it after `untaint`.
- `untaint` (by its owner) drops that owner; when none is left it removes exactly the taint orchbench
  recorded, puts back the taints it replaced, restores the role label and deletes the record. Nodes
  without a record, or held only by other runs, are left alone, so untainting twice (or untainting an
  untainted cluster) is not an error.
- Nodes also get the label `orchbench.io/role=<role>`, which load-test pods select (k8s_placement.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from orchbench.core.errors import ConfigError, PlatformError
from orchbench.core.platform.k8s_common import (
    ROLE_LABEL,
    ROLES,
    TAINT_ANNOTATION,
    TAINT_OWNERS_ANNOTATION,
    KubernetesConfig,
    NodeSelection,
    Role,
    Taint,
    api_call,
    status_of,
)

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
_CONFLICT_RETRIES = 3


def _as_dict(api_client: client.ApiClient, obj: Any) -> dict[str, Any]:
    data = api_client.sanitize_for_serialization(obj)
    return data if isinstance(data, dict) else {}


def _labels(node: Mapping[str, Any]) -> dict[str, str]:
    return dict((node.get("metadata") or {}).get("labels") or {})


def _name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name"))


def list_nodes(api_client: client.ApiClient, label_selector: str | None = None) -> list[dict[str, Any]]:
    core = client.CoreV1Api(api_client)
    with api_call("list", "nodes" + (f" ({label_selector})" if label_selector else "")):
        items = (
            core.list_node(label_selector=label_selector) if label_selector else core.list_node()
        ).items or []
    return [_as_dict(api_client, n) for n in items]


def select_nodes(api_client: client.ApiClient, config: KubernetesConfig) -> dict[Role, list[str]]:
    """The node names per role. Raises ConfigError when a role gets too few nodes or roles overlap."""
    all_nodes = list_nodes(api_client)
    by_name = {_name(n): n for n in all_nodes}
    chosen: dict[Role, list[str]] = {}
    # Explicit selections first, so that automatic ones can avoid them.
    order = sorted(ROLES, key=lambda r: not (config.nodes_for(r).names or config.nodes_for(r).labels))
    for role in order:
        sel = config.nodes_for(role)
        taken = {n for names in chosen.values() for n in names}
        chosen[role] = _select_role(api_client, role, sel, by_name, taken)
    overlap = set(chosen["loadtester"]) & set(chosen["model"])
    if overlap:
        raise ConfigError(
            f"nodes {sorted(overlap)} are selected for both the loadtester and the model; "
            "the load tester must not share a node with the model"
        )
    return chosen


def _select_role(
    api_client: client.ApiClient,
    role: Role,
    sel: NodeSelection,
    by_name: dict[str, dict[str, Any]],
    taken: set[str],
) -> list[str]:
    if sel.names:
        missing = [n for n in sel.names if n not in by_name]
        if missing:
            raise ConfigError(
                f"{role} nodes {missing} do not exist; the cluster has {sorted(by_name) or 'no nodes'}"
            )
        names = list(sel.names)
    elif sel.labels:
        # The server filters by the selector; filtering again here costs nothing and keeps the result
        # right against servers that ignore selectors (the test emulator does).
        matching = list_nodes(api_client, sel.label_selector)
        names = sorted(
            _name(n) for n in matching if all(_labels(n).get(k) == v for k, v in sel.labels.items())
        )
    else:
        candidates = [
            n
            for n in by_name.values()
            if _name(n) not in taken and not any(lbl in _labels(n) for lbl in CONTROL_PLANE_LABELS)
        ]
        candidates.sort(key=lambda n: (_labels(n).get(ROLE_LABEL) != role, _name(n)))
        names = [_name(n) for n in candidates[: sel.count]]
    if len(names) < sel.count:
        raise ConfigError(
            f"too few nodes for the {role} role: need {sel.count}, found {len(names)} by {sel.describe()}"
            f" ({names or 'none'}); the cluster has {len(by_name)} node(s): {sorted(by_name)}"
        )
    return names


# --- taint / untaint --------------------------------------------------------------------------------


def _read_record(node: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = ((node.get("metadata") or {}).get("annotations") or {}).get(TAINT_ANNOTATION)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        raise PlatformError(
            f"node {_name(node)}: annotation {TAINT_ANNOTATION} is not valid JSON ({raw[:80]!r}); "
            "remove it by hand after checking the node's taints"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("taint"), dict):
        raise PlatformError(f"node {_name(node)}: annotation {TAINT_ANNOTATION} has an unexpected shape")
    return record


def _read_owners(node: Mapping[str, Any]) -> list[str]:
    """The workflow ids holding orchbench's taint on the node (empty: none recorded)."""
    raw = ((node.get("metadata") or {}).get("annotations") or {}).get(TAINT_OWNERS_ANNOTATION)
    if raw is None:
        return []
    try:
        owners = json.loads(raw)
    except ValueError:
        owners = None
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        raise PlatformError(
            f"node {_name(node)}: annotation {TAINT_OWNERS_ANNOTATION} is not a JSON list of workflow ids "
            f"({str(raw)[:80]!r}); fix it by hand after checking which runs still use the node"
        )
    return sorted(set(owners))


def _conflict(node: Mapping[str, Any], role: Role, taint: Taint, owner: str) -> str | None:
    """Why this run may not take the node: other runs hold it in another role or with another taint."""
    record = _read_record(node)
    others = [o for o in _read_owners(node) if o != owner] if record else []
    if record is None or not others:
        return None
    if record.get("role") == role and _same(record["taint"], taint.to_dict()):
        return None
    return (
        f"node {_name(node)} is held by another orchbench run (workflow {', '.join(others)}) as its "
        f"{record.get('role')} node with taint {_fmt(record['taint'])}; this run wants it as its {role} "
        f"node with {taint}: select other nodes, or wait until that run has untainted"
    )


def _clean(taint: Mapping[str, Any]) -> dict[str, Any]:
    out = {"key": taint.get("key"), "effect": taint.get("effect")}
    if taint.get("value"):
        out["value"] = taint["value"]
    if taint.get("timeAdded"):
        out["timeAdded"] = taint["timeAdded"]
    return out


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (a.get("key"), a.get("value") or "", a.get("effect")) == (
        b.get("key"),
        b.get("value") or "",
        b.get("effect"),
    )


def _baseline(node: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The node's taints and role label as they were before orchbench touched it."""
    taints = [_clean(t) for t in ((node.get("spec") or {}).get("taints") or [])]
    label = _labels(node).get(ROLE_LABEL)
    record = _read_record(node)
    if record is None:
        return taints, label
    ours = record["taint"]
    taints = [t for t in taints if not _same(t, ours)]
    for prev in record.get("previous_taints") or []:
        if not any(_same(t, prev) for t in taints):
            taints.append(_clean(prev))
    return taints, record.get("previous_role_label")


def _patch_node(
    api_client: client.ApiClient,
    node: Mapping[str, Any],
    taints: list[dict[str, Any]],
    label: str | None,
    record: dict[str, Any] | None,
    owners: list[str] | None = None,
) -> None:
    meta: dict[str, Any] = {
        "labels": {ROLE_LABEL: label},  # None deletes the key (JSON merge patch)
        "annotations": {
            TAINT_ANNOTATION: json.dumps(record, sort_keys=True) if record else None,
            TAINT_OWNERS_ANNOTATION: json.dumps(sorted(owners)) if record and owners else None,
        },
    }
    rv = (node.get("metadata") or {}).get("resourceVersion")
    if rv:
        meta["resourceVersion"] = rv  # optimistic concurrency: 409 if the node changed since we read it
    body = {"metadata": meta, "spec": {"taints": taints}}
    with api_call("patch", f"node {_name(node)}"):
        client.CoreV1Api(api_client).patch_node(
            _name(node), body, _content_type="application/merge-patch+json"
        )


def _read_node(api_client: client.ApiClient, name: str) -> dict[str, Any]:
    with api_call("read", f"node {name}"):
        return _as_dict(api_client, client.CoreV1Api(api_client).read_node(name))


def _with_conflict_retry(api_client: client.ApiClient, name: str, fn: Any) -> Any:
    """Read-modify-patch a node, re-reading it when someone else changed it in between (HTTP 409)."""
    for attempt in range(_CONFLICT_RETRIES):
        node = _read_node(api_client, name)
        try:
            return fn(node)
        except PlatformError as exc:
            if status_of(exc) != 409 or attempt == _CONFLICT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def taint_node(
    api_client: client.ApiClient, name: str, role: Role, taint: Taint, owner: str = ""
) -> dict[str, Any]:
    """Make `taint` the node's only taint with its key, label it with its role, record the baseline,
    and add `owner` (the workflow's id) to the node's owners. PlatformError if another run holds the
    node in another role or with another taint."""

    def apply(node: dict[str, Any]) -> dict[str, Any]:
        why = _conflict(node, role, taint, owner)
        if why:
            raise PlatformError(why)
        owners_now = _read_owners(node) if _read_record(node) is not None else []
        owners = sorted({*owners_now, owner})
        current = [_clean(t) for t in ((node.get("spec") or {}).get("taints") or [])]
        base_taints, base_label = _baseline(node)
        previous = [t for t in base_taints if t.get("key") == taint.key]
        wanted = [t for t in base_taints if t.get("key") != taint.key] + [taint.to_dict()]
        record = {
            "role": role,
            "taint": taint.to_dict(),
            "previous_taints": previous,
            "previous_role_label": base_label,
        }
        same_key_now = [t for t in current if t.get("key") == taint.key]
        if len(same_key_now) == 1 and taint.matches(same_key_now[0]):
            action = "unchanged"
        elif same_key_now:
            action = "updated"
        else:
            action = "added"
        unchanged = (
            _read_record(node) == record
            and owners == owners_now
            and _labels(node).get(ROLE_LABEL) == role
            and sorted(map(json.dumps, map(_strip_time, current)))
            == sorted(map(json.dumps, map(_strip_time, wanted)))
        )
        if not unchanged:
            _patch_node(api_client, node, wanted, role, record, owners)
        return {
            "role": role,
            "taint": str(taint),
            "action": action,
            "previous": [_fmt(t) for t in previous],
            "owners": owners,
        }

    result: dict[str, Any] = _with_conflict_retry(api_client, name, apply)
    return result


def untaint_node(api_client: client.ApiClient, name: str, owner: str = "") -> dict[str, Any] | None:
    """Release `owner`'s hold on the node; once no owner is left, restore the node to its state before
    orchbench. None if orchbench had not touched it, or only other runs hold it."""

    def restore(node: dict[str, Any]) -> dict[str, Any] | None:
        record = _read_record(node)
        if record is None:
            return None
        owners = _read_owners(node)
        if owners and owner not in owners:
            return None  # another run's taint: never ours to remove
        remaining = [o for o in owners if o != owner]
        if remaining:
            current = [_clean(t) for t in ((node.get("spec") or {}).get("taints") or [])]
            _patch_node(api_client, node, current, _labels(node).get(ROLE_LABEL), record, remaining)
            return {"role": record.get("role"), "released": owner, "kept_for": remaining}
        taints, label = _baseline(node)
        _patch_node(api_client, node, taints, label, None)
        return {
            "role": record.get("role"),
            "removed": _fmt(record["taint"]),
            "restored": [_fmt(t) for t in record.get("previous_taints") or []],
        }

    result: dict[str, Any] | None = _with_conflict_retry(api_client, name, restore)
    return result


def taint_nodes(api_client: client.ApiClient, config: KubernetesConfig, owner: str = "") -> dict[str, Any]:
    """Taint the selected nodes for `owner` (the workflow's id). A node another run holds in another
    role or with another taint is refused before any node is patched."""
    chosen = select_nodes(api_client, config)
    by_name = {_name(n): n for n in list_nodes(api_client)}
    for role in ROLES:
        for name in chosen[role]:
            why = _conflict(by_name.get(name) or {}, role, config.taint_for(role), owner)
            if why:
                raise PlatformError(why)
    report: dict[str, Any] = {}
    for role in ROLES:
        for name in chosen[role]:
            report[name] = taint_node(api_client, name, role, config.taint_for(role), owner)
    return report


def untaint_nodes(api_client: client.ApiClient, owner: str = "") -> dict[str, Any]:
    """Release `owner`'s taints on every node carrying orchbench's record (whatever selection tainted
    it): each node's taint is removed once its last owner has gone; other runs' holds are left."""
    report: dict[str, Any] = {}
    for node in list_nodes(api_client):
        if _read_record(node) is not None:
            done = untaint_node(api_client, _name(node), owner)
            if done is not None:
                report[_name(node)] = done
    return report


def _strip_time(t: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": t.get("key"), "value": t.get("value") or "", "effect": t.get("effect")}


def _fmt(t: Mapping[str, Any]) -> str:
    return f"{t.get('key')}={t.get('value') or ''}:{t.get('effect')}"
