"""Test-session settings shared by every test module."""

from __future__ import annotations

import os
import tempfile

# One machine lock per test session (orchbench.core.machine): runs inside this session exclude each
# other as on a real machine, but not the runs of another session on the same machine.
os.environ.setdefault("ORCHBENCH_RUNTIME_DIR", tempfile.mkdtemp(prefix="orchbench-test-runtime-"))
