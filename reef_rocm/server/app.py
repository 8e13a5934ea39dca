"""The server process: open the GPUs (one scheduler each), listen, serve, shut down cleanly.

Shutdown (SIGINT/SIGTERM, or ``stop()``): new calls are refused; in-flight inferences get
``grace_s`` to finish; then every scheduler is closed (what is left is cancelled and its
callers get UNAVAILABLE), every session's shared memory is unmapped, the listener stops, the
devices close and the Unix socket (and the directory, if the server made it) is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from reef_rocm.proto import reef_pb2_grpc
from reef_rocm.server.address import (
    ListenAddress,
    parse_listen,
    prepare_unix_socket,
    remove_unix_socket,
    secure_unix_socket,
)
from reef_rocm.server.catalog import PackageCatalog
from reef_rocm.server.gpus import GpuWorker
from reef_rocm.server.service import ReefService

log = logging.getLogger("reef.serve")

DEFAULT_MAX_INLINE = 1 << 20


@dataclass
class ServeOptions:
    """``reef serve``'s settings, one field per flag."""

    packages: Path
    policy: str = "reset+poll"
    gpus: tuple[int, ...] = (0,)
    listen: str | None = None  # None: the default Unix socket
    backend: str = "auto"
    device_options: dict[str, Any] = field(default_factory=dict)  # sim model options
    max_inline_bytes: int = DEFAULT_MAX_INLINE
    grace_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.gpus or len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"--gpus must name distinct GPUs, got {list(self.gpus)}")
        if self.max_inline_bytes < 0:
            raise ValueError("--max-inline-bytes must be >= 0")


def sched_options(policy: str) -> Any:
    """The scheduler's options for the server: thread mode (submit from many threads)."""
    from reef_rocm.sched import SchedOptions

    names = {f.name for f in dataclasses.fields(SchedOptions)}
    return SchedOptions(policy=policy, **({"threaded": True} if "threaded" in names else {}))


class ReefServer:
    """``devices``: already-open devices, one per GPU (tests pass simulated ones); default:
    open ``options.gpus`` through ``options.backend``."""

    def __init__(self, options: ServeOptions, devices: Sequence[Any] | None = None) -> None:
        self.options = options
        self.address: ListenAddress = parse_listen(options.listen)
        self.catalog = PackageCatalog(options.packages)
        self._devices = list(devices) if devices is not None else None
        self.workers: list[GpuWorker] = []
        self.service: ReefService | None = None
        self._server: grpc.aio.Server | None = None
        self._made_dir = False
        self._bound = False
        self._stop = asyncio.Event()
        self._stopped = False

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        from reef_rocm.gpu import open_device

        opts = self.options
        if self._devices is None:
            self._devices = []
            for ordinal in opts.gpus:
                self._devices.append(open_device(opts.backend, ordinal, **opts.device_options))
        try:
            sopts = sched_options(opts.policy)
            for i, dev in enumerate(self._devices):
                self.workers.append(GpuWorker(i, dev, sopts))
                log.info("GPU %d: %s (%s), policy %s", i, dev.info.name, dev.info.backend,
                         opts.policy)  # fmt: skip
            self.service = ReefService(self.workers, self.catalog, opts.policy,
                                       opts.max_inline_bytes)  # fmt: skip
            limit = opts.max_inline_bytes + (1 << 20)  # room for the message around the tensors
            self._server = grpc.aio.server(
                options=[
                    ("grpc.max_receive_message_length", limit),
                    ("grpc.max_send_message_length", limit),
                    ("grpc.so_reuseport", 0),
                ]
            )
            reef_pb2_grpc.add_ReefServicer_to_server(self.service, self._server)
            addr = self.address
            if addr.kind == "unix":
                self._made_dir = prepare_unix_socket(addr)
            port = self._server.add_insecure_port(addr.grpc_target())
            self._bound = addr.kind == "unix"  # from here on the socket file is ours
            if addr.kind == "tcp":
                if port == 0:
                    raise OSError(f"cannot listen on {addr}")
                self.address = addr.with_port(port)
                if not addr.loopback:
                    log.warning(
                        "listening on %s, which is not loopback: anyone who can reach it can "
                        "load models and run them on this server's GPUs",
                        self.address,
                    )
            await self._server.start()
            if addr.kind == "unix":
                secure_unix_socket(addr)
        except BaseException:
            await self._teardown()
            raise
        log.info("serving on %s (%d GPU(s), policy %s, packages %s)", self.address,
                 len(self.workers), opts.policy, self.catalog.root)  # fmt: skip

    async def serve_until_stopped(self) -> None:
        await self._stop.wait()
        await self._shutdown()

    def request_stop(self) -> None:
        self._stop.set()

    async def _shutdown(self) -> None:
        if self._stopped:
            return
        svc = self.service
        if svc is not None:
            svc.stopping = True
            pending = [f for s in svc.sessions.values() for f in s.in_flight]
            if pending:
                log.info("shutdown: waiting up to %.1f s for %d inference(s)", self.options.grace_s,
                         len(pending))  # fmt: skip
                _, left = await asyncio.wait(pending, timeout=self.options.grace_s)
                if left:
                    log.warning("shutdown: cancelling %d inference(s) still running", len(left))
        await self._teardown()

    async def _teardown(self) -> None:
        self._stopped = True
        # schedulers first: each finishes or cancels its work and frees every model instance
        for w in self.workers:
            await asyncio.to_thread(w.close)
        svc = self.service
        if svc is not None:
            for s in list(svc.sessions.values()):
                s.events.put_nowait(None)  # ends the Connect streams
                s.ended = True
                for r in s.regions.values():
                    svc._unmap(r)
                s.regions.clear()
                s.models.clear()
            svc.sessions.clear()
            svc._retry_unmaps()
        if self._server is not None:
            await self._server.stop(grace=0.5)
        if self._bound:
            remove_unix_socket(self.address, self._made_dir)
        for w in self.workers:
            log.info("GPU %d closed; device memory in use %s", w.index,
                     "unknown" if w.memory_in_use() < 0 else f"{w.memory_in_use()} B")  # fmt: skip
        log.info("server stopped")

    # ------------------------------------------------------------------ entry points
    def run(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM (the ``reef serve`` command)."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, sig)
            await self.start()
            await self.serve_until_stopped()

        asyncio.run(main())

    def _on_signal(self, sig: int) -> None:
        if self._stop.is_set():
            log.info("%s again: already shutting down", signal.Signals(sig).name)
            return
        log.info("%s: shutting down", signal.Signals(sig).name)
        self._stop.set()


class ServerThread:
    """A server on a background event loop, for tests and embedding:
    ``with ServerThread(opts, devices) as srv: Client(srv.address)``."""

    def __init__(self, options: ServeOptions, devices: Sequence[Any] | None = None) -> None:
        self.server = ReefServer(options, devices)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="reef-serve", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            try:
                await self.server.start()
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                self._error = e
                self._started.set()
                return
            self._started.set()
            await self.server.serve_until_stopped()

        self._loop.run_until_complete(main())

    @property
    def address(self) -> str:
        return self.server.address.grpc_target()

    def start(self) -> ServerThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.server.request_stop)
            self._thread.join()
        with contextlib.suppress(Exception):
            self._loop.close()

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the server's loop and return its result (test inspection)."""
        fut = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        return fut.result()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _call(fn: Any) -> Any:
    return fn()
