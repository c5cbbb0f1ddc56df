"""One narrow exception hierarchy. The CLI turns any of these into one line on stderr and an exit code.

Exit codes: 2 for bad input a user can fix (spec, manifest, payload, tool JSON); 1 for failures while
running (a server died, a deployment never became ready, the load tester failed).
"""

from __future__ import annotations

from results_schema.errors import ParseError, ResultsError, ResultsFileError, SchemaVersionError
from serving.errors import ModelCheckError, ServingConfigError, ServingError

__all__ = [
    "USER_FACING",
    "ArmVerificationError",
    "ConfigError",
    "DeployTimeout",
    "LoadTestError",
    "ModelCheckError",
    "OrchbenchError",
    "ParseError",
    "PlatformError",
    "ResultsError",
    "ResultsFileError",
    "SchemaVersionError",
    "ServingConfigError",
    "ServingError",
]


class OrchbenchError(Exception):
    """Base class of every error orchbench raises on purpose."""

    exit_code = 1


class ConfigError(OrchbenchError):
    """A user's mistake in a spec, manifest, payload, flag or path: fix the input and run again."""

    exit_code = 2


class PlatformError(OrchbenchError):
    """Taint, deploy, wait or teardown failed on a platform (local processes or Kubernetes)."""


class DeployTimeout(PlatformError):
    """A deployment did not become ready in time; the message carries its last status."""


class ArmVerificationError(PlatformError):
    """An arm is not what it claims (orchestrator present in 'without', or absent in 'with')."""


class LoadTestError(OrchbenchError):
    """The load tester failed or the target answered errors; raw artifacts are kept."""


#: Every error raised on purpose, in any layer: each has an `exit_code` (2: bad input, 1: a failure
#: while running). The bottom layers (results_schema, serving) import nothing of the core, so their
#: errors have their own bases; catch this tuple, not OrchbenchError alone.
USER_FACING: tuple[type[Exception], ...] = (OrchbenchError, ResultsError, ServingError)
