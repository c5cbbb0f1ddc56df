"""Where the shipped data lives: package data of `orchbench.data`, reached through importlib.resources.

The data sits inside the package so an installed wheel carries it (the steps image installs one); the
checkout's top-level `specs/`, `payloads/` and `manifests/tf_flowers.yaml` are symlinks into it, so a
reader finds them where the design card says. `files()` of a regular package installed from a wheel
or a checkout is a real directory, so a plain Path is returned.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from serving.cache import cache_dir

__all__ = ["DATA", "MANIFESTS", "PAYLOADS", "SOURCE_ROOT", "SPECS", "cache_dir", "shipped_spec"]

DATA = Path(str(files("orchbench.data")))
MANIFESTS = DATA / "manifests"
PAYLOADS = DATA / "payloads"
SPECS = DATA / "specs"
#: The source tree, when orchbench runs from a checkout (for provenance: its git commit); else None.
SOURCE_ROOT: Path | None = (
    Path(__file__).resolve().parents[2] if (Path(__file__).resolve().parents[2] / ".git").exists() else None
)


def shipped_spec(name: str) -> Path | None:
    """A shipped spec named short (`default`, `seed`, `calibrate`), or None if there is none."""
    if not name or "/" in name or "\\" in name or name.endswith((".yaml", ".yml")):
        return None
    path = SPECS / f"{name}.yaml"
    return path if path.is_file() else None


def shipped_spec_names() -> list[str]:
    return sorted(p.stem for p in SPECS.glob("*.yaml"))
