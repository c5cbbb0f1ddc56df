"""orchbench's versioned results schema: Arrow tables `runs` and `samples`, parsers per load tool."""

from results_schema.detect import load_summary, parse_data
from results_schema.io import read_table, write_table
from results_schema.schema import RUNS_SCHEMA, SAMPLES_SCHEMA, SCHEMA_VERSION
from results_schema.summary import ToolSummary

__all__ = [
    "RUNS_SCHEMA",
    "SAMPLES_SCHEMA",
    "SCHEMA_VERSION",
    "ToolSummary",
    "load_summary",
    "parse_data",
    "read_table",
    "write_table",
]
