"""Errors of the results layer. It imports nothing of orchbench's other packages, so it has its own.

Every one is a user's input problem (a tool's JSON that cannot be read, a results file of a schema
version this code does not know): `exit_code` 2, turned into one line by the CLI.
"""

from __future__ import annotations


class ResultsError(Exception):
    """Base class: a results or load-tester file that cannot be used as it is."""

    exit_code = 2


class ParseError(ResultsError):
    """Load-tester output that cannot be read: names the file and what is wrong with it."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SchemaVersionError(ResultsError):
    """A results file written with a schema version this orchbench does not know."""


class ResultsFileError(ResultsError):
    """A results file that is missing, not Parquet, of another table, or cannot be written."""
