"""Child processes that die with the thread that started them: Linux's parent-death signal.

    subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent())

`die_with_parent()` returns a `preexec_fn` that, in the child between fork and exec, asks the kernel
(prctl PR_SET_PDEATHSIG) to send the child SIGTERM when its parent goes, however the parent goes
(SIGKILL included). The setting survives exec (of a program that is not set-uid), so it holds for
the step process or load tester that runs next; it is not inherited by the child's own children.

Two details of the kernel's rule matter:
- "parent" is the *thread* that forked, not the process: a child started from a worker thread gets
  its signal when that thread exits. The local runner and the load-tool launcher start their
  children from the thread that waits for them, so both end together.
- the parent may already be gone by the time the child calls prctl; the child then checks that its
  parent is still the process that started it, and signals itself if not.

Used for the processes whose parent lives as long as they should (the local runner's step processes,
and k6 / vegeta / ghz under a load-test step). Servers outlive the step that starts them by design
and watch the run's process instead (serving/lease.py). Elsewhere than Linux, `die_with_parent()`
returns None (no preexec_fn) and nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["PR_SET_PDEATHSIG", "die_with_parent"]

#: linux/prctl.h
PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return fn


# Looked up once, here: a preexec_fn runs between fork and exec, where loading a library is unsafe.
_PRCTL = _prctl()


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> Callable[[], None] | None:
    """A `preexec_fn` giving the child `sig` when the calling thread (its parent) exits; None where
    the platform has no parent-death signal. `parent`: the pid the child's parent must still be
    (default: the caller's; a child that calls this itself, after a fork, passes os.getppid())."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid() if parent is None else parent
    # prctl(2) reads unsigned longs: pass them as such (a bare int leaves a register's upper half
    # undefined in a variadic call), built here rather than in the child.
    args = (ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(int(sig)), *(ctypes.c_ulong(0),) * 3)

    def preexec() -> None:
        prctl(*args)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), sig)

    return preexec
