"""Errors of the serving layer (model, weights, servers). It imports nothing of orchbench's other
packages, so it has its own; the CLI turns each into one line with its `exit_code`."""

from __future__ import annotations


class ServingError(Exception):
    """Base class: the local serving stack failed while running (exit 1)."""

    exit_code = 1


class ServingConfigError(ServingError):
    """A bad input to the serving stack a user can fix: weights file, thread count, flag (exit 2)."""

    exit_code = 2


class ModelCheckError(ServingError):
    """The converted ONNX model disagrees with the numpy reference (exit 1)."""
