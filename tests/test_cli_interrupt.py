"""A signal that arrives inside a library's callback still ends the command as an interrupt: one line,
exit 130. Seen in CI: SIGTERM landed while pydantic serialised the spec, and pydantic wrapped the
interrupt in its own PydanticSerializationError, so the run exited 1 with a traceback-like message."""

from __future__ import annotations

import importlib
import os
import signal

import pytest
from pydantic import BaseModel, model_serializer

from orchbench.cli import interrupts

# the module, not the package's `main` function of the same name
cli = importlib.import_module("orchbench.cli.main")


class _SignalledWhileSerialising(BaseModel):
    x: int = 1

    @model_serializer(mode="wrap")
    def _ser(self, handler):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside pydantic's callback
        return handler(self)


def test_signal_inside_a_library_callback_exits_130(monkeypatch, capsys):
    def fake_app(**_kwargs):  # type: ignore[no-untyped-def]
        return _SignalledWhileSerialising().model_dump()

    monkeypatch.setattr(cli, "app", fake_app)
    monkeypatch.setattr(interrupts, "SIGNALLED", [])
    old = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stop:
            cli.main([])
    finally:
        signal.signal(signal.SIGTERM, old)
    assert stop.value.code == 130
    err = capsys.readouterr().err
    assert err.strip() == "orchbench: error: interrupted by SIGTERM", err


def test_an_error_without_a_signal_is_not_called_an_interrupt(monkeypatch):
    def fake_app(**_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "app", fake_app)
    monkeypatch.setattr(interrupts, "SIGNALLED", [])
    old = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(RuntimeError, match="a bug"):
            cli.main([])
    finally:
        signal.signal(signal.SIGTERM, old)
