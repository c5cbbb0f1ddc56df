"""The command line's signal handling: SIGINT, SIGTERM and SIGHUP outside the local runner (which
handles them itself) stop the command with one line and exit 130.

Typer would turn a KeyboardInterrupt into a silent exit, so the handler raises our own error. It also
records the signal: raised inside a library's callback (pydantic's serialiser, seen in CI), the error
comes out wrapped in the library's own exception, and `orchbench.cli.main` still reports it as the
interrupt.
"""

from __future__ import annotations

import signal

#: the signals that stopped this command, in order of arrival
SIGNALLED: list[str] = []


def interrupt(signum: int, _frame: object) -> None:
    # imported here, as main's commands import theirs, so that `orchbench --help` stays fast
    from pipelines.local_runner import Interrupted

    name = signal.Signals(signum).name
    SIGNALLED.append(name)
    raise Interrupted(f"interrupted by {name}")


def install() -> None:
    """The handler for SIGINT, SIGTERM and SIGHUP, except where the shell set one to be ignored (keep
    nohup's and `cmd &`'s choice)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, interrupt)


def signalled() -> str | None:
    """The first signal that arrived, if any."""
    return SIGNALLED[0] if SIGNALLED else None
