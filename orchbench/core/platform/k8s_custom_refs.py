"""The custom objects a KServe / Seldon Core v2 deployment is made of, as its record names them, and what
CustomObjectsPlatform (k8s_custom.py) reads off a live one: its `Ready` condition and its owner label
(pure: no API calls).

An `ObjectRef` is one object (group, version, plural, kind, name); the JSON DeploymentRecord keeps a
list of them (`details["objects"]`), in creation order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from orchbench.core.errors import ArmVerificationError
from orchbench.core.platform.k8s_arms import OWNER_LABEL


@dataclass(frozen=True)
class ObjectRef:
    group: str
    version: str
    plural: str
    kind: str
    name: str

    def to_dict(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObjectRef:
        return cls(str(d["group"]), str(d["version"]), str(d["plural"]), str(d["kind"]), str(d["name"]))

    @classmethod
    def of(cls, body: dict[str, Any], plural: str) -> ObjectRef:
        group, _, version = str(body["apiVersion"]).partition("/")
        return cls(group, version, plural, str(body["kind"]), str(body["metadata"]["name"]))


def condition_true(obj: dict[str, Any] | None, kind: str = "Ready") -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def owner_of(obj: dict[str, Any] | None) -> str:
    return str((((obj or {}).get("metadata") or {}).get("labels") or {}).get(OWNER_LABEL) or "")


def check_owner_label(details: dict[str, Any], obj: dict[str, Any], where: str) -> None:
    """ArmVerificationError unless the live object carries the owner its record was deployed with."""
    want = str(details.get("owner") or "")
    if want and owner_of(obj) != want:
        raise ArmVerificationError(
            f"{where}: the live object's {OWNER_LABEL} is {owner_of(obj)!r}, not this run's {want!r}: "
            "another run replaced it"
        )
