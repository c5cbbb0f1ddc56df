"""What the model server and the orchestrator share: binding, readiness line, signals, shutdown."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
from aiohttp import web

from orchbench.fsio import write_text
from serving import lease

#: Printed (and flushed) once every listener is bound; LocalPlatform waits for real answers anyway.
READY_PREFIX = "orchbench-serving ready"
#: Exit code when a port cannot be bound (LocalPlatform turns it into a PlatformError naming the port).
EXIT_BIND = 3

GRPC_SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),  # otherwise a second server silently shares a port already in use
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


class BindError(RuntimeError):
    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.port = port


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (a connect succeeds or bind fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that is free right now (tests and the benchmark use these)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def start_rest(
    handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], host: str, port: int
) -> web.ServerRunner:
    """A low-level aiohttp server (no router, no middlewares) calling `handler` for every request."""
    runner = web.ServerRunner(web.Server(handler, access_log=None), handle_signals=False)
    await runner.setup()
    # SO_REUSEADDR: a port whose previous server's connections sit in TIME_WAIT can be bound again
    # (Linux still refuses it while another socket listens there; that is SO_REUSEPORT, kept off).
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise BindError(host, port, exc.strerror or str(exc)) from None
    return runner


async def start_raw(
    protocol: Callable[[], asyncio.Protocol], host: str, port: int
) -> asyncio.base_events.Server:
    """A plain asyncio server: `protocol()` handles each connection (the orchestrator's REST path)."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(protocol, host, port, reuse_address=True, backlog=1024)
    except OSError as exc:
        raise BindError(host, port, exc.strerror or str(exc)) from None


async def stop_listeners(listeners: list[Any], grace_s: float = 0.5) -> None:
    """Stop what start_rest / start_raw / start_grpc started, whatever fails on the way."""
    for item in listeners:
        with contextlib.suppress(Exception):
            if isinstance(item, web.ServerRunner):
                await item.cleanup()
            elif isinstance(item, asyncio.base_events.Server):
                item.close()
                await item.wait_closed()
            else:
                await item.stop(grace=grace_s)


async def start_grpc(handlers: list[grpc.GenericRpcHandler], host: str, port: int) -> grpc.aio.Server:
    server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)
    server.add_generic_rpc_handlers(handlers)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise BindError(host, port, str(exc)) from None
    if bound <= 0 or (port and bound != port):
        raise BindError(host, port, "address already in use")
    await server.start()
    return server


async def serve_until_signal(
    start: Callable[[], Awaitable[list[Any]]],
    describe: str,
    cleanup: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Start listeners, print the ready line, run until SIGTERM/SIGINT, stop them. Returns an exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    unwatch = lease.watch_owner(loop, stop.set)  # started by a run: stop when the run is gone
    try:
        listeners = await start()
    except BindError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BIND
    print(f"{READY_PREFIX} {describe}", flush=True)
    await stop.wait()
    unwatch()
    await stop_listeners(listeners)
    if cleanup is not None:
        await cleanup()
    return 0


#: The last this much of a delay `after_delay` busy-waits instead of sleeping (a loop timer can fire
#: up to ~1 ms late: libuv keeps its loop time in whole ms).
SPIN_S = 0.0015


def sleep_part_s(left_s: float) -> float:
    """How long `after_delay` lets the loop sleep of `left_s` seconds to go: the whole ms in
    `left_s - SPIN_S`, rounded down, or 0 (no timer: the whole delay is a busy-wait).

    Whole ms, because uvloop hands libuv a timer's delay rounded to whole ms: call_later(0.0005)
    became a 0 ms timer, and the earlier loop (a timer for `left - SPIN_S`, then again while more
    than SPIN_S was left) re-armed it 508 times in 0.5 ms (measured here, 2026-12-07): a delay whose
    sleep part was under 1 ms never let the loop sleep, but cycled it hot, while longer ones slept.
    Calibration's 2 ms reference (0.5 ms to sleep) was such a delay: the answer's write after its
    hold took 33 µs against 39-42 µs after the 2.5-4 ms delays' (REST; gRPC 20 against 21-24), and
    the delays' means came back +0.005 to +0.017 ms high on average; with whole ms and a 5 ms
    reference, -0.003 to +0.002 at 0.5 and 1 ms (benchmarks/README.md, "The reference that never
    slept")."""
    return max(0.0, float(int((left_s - SPIN_S) * 1000))) / 1000


def after_delay(loop: asyncio.AbstractEventLoop, deadline: float, then: Callable[[], None]) -> None:
    """Call `then()` at `deadline` (time.perf_counter() seconds), precisely: one loop timer for the
    whole ms of the bulk (`sleep_part_s`), then a busy-wait to the deadline, since a timer alone
    overshoots sub-millisecond delays by tens of µs to a millisecond (the injected delay of the
    known-answer calibration)."""
    sleep = sleep_part_s(deadline - time.perf_counter())
    if sleep > 0:
        loop.call_later(sleep, _spin_until, deadline, then)
        return
    _spin_until(deadline, then)


def _spin_until(deadline: float, then: Callable[[], None]) -> None:
    while time.perf_counter() < deadline:
        pass
    then()


async def hold(delay_s: float) -> None:
    """Await `delay_s` seconds, precisely (`after_delay`); at once when it is 0. The injected delay of
    the awaitable forwarders (aiohttp, grpc.aio), held on the answer's way back."""
    if delay_s <= 0:
        return
    loop = asyncio.get_running_loop()
    released = loop.create_future()
    after_delay(loop, time.perf_counter() + delay_s, lambda: released.set_result(None))
    await released


def pin_current_process(cpus: str | None) -> None:
    """`--cpus 1,2` → sched_setaffinity for this process (threads created later inherit it)."""
    if not cpus:
        return
    import os

    os.sched_setaffinity(0, {int(c) for c in cpus.split(",") if c.strip()})


def exit_with(code: int) -> None:
    """Exit, first writing the code to $ORCHBENCH_EXIT_FILE (LocalPlatform reads it when the server
    is not its child, e.g. when it died before a later step looked)."""
    import os

    path = os.environ.get("ORCHBENCH_EXIT_FILE")
    if path:
        with contextlib.suppress(OSError):
            write_text(path, f"{code}\n")
    sys.exit(code)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (`<prog>: error: ...`, exit 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def port(text: str) -> int:
    """An argparse type: a TCP port, 1..65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1..65535")
    return value


def host_port(text: str) -> str:
    """An argparse type: HOST:PORT (an upstream), checked here so a typo is a usage error."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    port(port_text)
    return text
