"""Tiny real step functions for the local-runner tests (run through hera.workflows.runner)."""

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

from hera.workflows import Parameter

from orchbench.core.errors import ConfigError
from steps.common import in_dir, out_dir, step


def shout(text: str) -> Annotated[str, Parameter(name="loud")]:
    return text.upper() + "!"


def write_art(text: str) -> None:
    (out_dir("box") / "f.txt").write_text(text)


def read_art(suffix: str) -> Annotated[str, Parameter(name="content")]:
    return (in_dir("box") / "f.txt").read_text() + suffix


@step
def fail(message: str) -> None:
    raise ConfigError(message)


def mark(path: str, status: str) -> None:
    Path(path).write_text(status)


@step
def bug(message: str) -> None:
    raise ValueError(message)


@step
def die(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def nap(message: str) -> None:
    """Says `message` on stderr, then sleeps until it is stopped."""
    print(message, file=sys.stderr, flush=True)
    time.sleep(60)
