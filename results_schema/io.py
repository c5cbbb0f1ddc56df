"""Parquet in and out: written atomically, stamped with the schema version, refused when unknown."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchbench.fsio import atomic_path
from results_schema.errors import ResultsFileError, SchemaVersionError
from results_schema.schema import KNOWN_VERSIONS, SCHEMA_VERSION, SCHEMAS, STAGE_DEFAULTS

META_VERSION = b"orchbench.schema_version"
META_TABLE = b"orchbench.table"


def write_table(table: pa.Table, path: str | Path, kind: str) -> Path:
    """Write `table` (cast to the `kind` schema) to `path` atomically (orchbench.fsio.atomic_path)."""
    schema = SCHEMAS[kind]
    table = table.select(schema.names).cast(schema)
    meta = {
        **(table.schema.metadata or {}),
        META_VERSION: str(SCHEMA_VERSION).encode(),
        META_TABLE: kind.encode(),
    }
    table = table.replace_schema_metadata(meta)
    path = Path(path)
    with contextlib.ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(atomic_path(path))
        except OSError as exc:
            raise ResultsFileError(f"{path.parent}: cannot write results there ({exc.strerror})") from None
        pq.write_table(table, tmp)
    return path


def read_table(path: str | Path, kind: str) -> pa.Table:
    """Read a results table; refuse files of another table kind or an unknown schema version."""
    path = Path(path)
    try:
        meta = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such results file") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ResultsFileError(f"{path}: not a Parquet file ({exc})") from None
    raw = meta.get(META_VERSION)
    if raw is None:
        raise SchemaVersionError(
            f"{path}: no orchbench schema version in the file; not an orchbench results file"
        )
    try:
        version = int(raw)
    except ValueError:
        raise SchemaVersionError(f"{path}: unreadable schema version {raw!r}") from None
    if version not in KNOWN_VERSIONS:
        raise SchemaVersionError(
            f"{path}: schema version {version} is unknown to this orchbench (knows {sorted(KNOWN_VERSIONS)});"
            " upgrade orchbench to read it"
        )
    table_kind = meta.get(META_TABLE, b"").decode()
    if table_kind != kind:
        raise ResultsFileError(f"{path}: holds the {table_kind!r} table, expected {kind!r}")
    table = pq.read_table(path)
    if kind == "overheads" and version == 1:
        table = upgrade_overheads_v1(table)
    if version < 3 and kind in ("runs", "samples", "overheads"):
        table = upgrade_to_stages(table, kind)
    return table


def upgrade_to_stages(table: pa.Table, kind: str) -> pa.Table:
    """A version-1 or -2 table in the current schema: one load, no stage (stage "", stage_kind
    "none", stage_value null; overheads `valid` true). Each row keeps its own `schema_version`."""
    return _in_current_schema(table, kind)


def upgrade_overheads_v1(table: pa.Table) -> pa.Table:
    """A version-1 `overheads` table in the current schema: the seed's two arms (arm "with", baseline
    "without"), no standard error, df, block count or paired test (version 1 did not store them),
    `mann_whitney_u_p` dropped. Each row keeps its own `schema_version` (1)."""
    return _in_current_schema(table, "overheads", {"arm": "with", "baseline": "without"})


def _in_current_schema(table: pa.Table, kind: str, fill: dict[str, object] | None = None) -> pa.Table:
    """`table` in the `kind` schema: its own columns cast, the columns it lacks filled (`valid` true,
    the no-stage defaults, then `fill`'s constants), every other one null; its extra columns dropped."""
    n = table.num_rows
    schema = SCHEMAS[kind]
    constants: dict[str, object] = {
        "valid": True,
        **{k: v for k, v in STAGE_DEFAULTS.items() if v is not None},
        **(fill or {}),
    }
    columns = {}
    for f in schema:
        if f.name in table.column_names:
            columns[f.name] = table.column(f.name).cast(f.type)
        elif f.name in constants:
            columns[f.name] = pa.array([constants[f.name]] * n, f.type)
        else:
            columns[f.name] = pa.nulls(n, f.type)
    return pa.Table.from_pydict(columns, schema=schema)
