"""One narrow exception hierarchy. The CLI turns any of these into one line on stderr and an exit code.

Exit codes: 2 for bad input a user can fix (spec, manifest, payload, tool JSON); 1 for failures while
running (a server died, a deployment never became ready, the load tester failed).
"""

from __future__ import annotations


class OrchbenchError(Exception):
    """Base class of every error orchbench raises on purpose."""

    exit_code = 1


class ConfigError(OrchbenchError):
    """A user's mistake in a spec, manifest, payload, flag or path: fix the input and run again."""

    exit_code = 2


class ParseError(ConfigError):
    """Load-tester output that cannot be read: names the file and what is wrong with it."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SchemaVersionError(ConfigError):
    """A results file written with a schema version this orchbench does not know."""


class PlatformError(OrchbenchError):
    """Taint, deploy, wait or teardown failed on a platform (local processes or Kubernetes)."""


class DeployTimeout(PlatformError):
    """A deployment did not become ready in time; the message carries its last status."""


class ArmVerificationError(PlatformError):
    """An arm is not what it claims (orchestrator present in 'without', or absent in 'with')."""


class LoadTestError(OrchbenchError):
    """The load tester failed or the target answered errors; raw artifacts are kept."""
