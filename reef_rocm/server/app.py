"""The server process: open the GPUs (one scheduler each), listen, serve, shut down cleanly.

Shutdown (SIGINT/SIGTERM, or ``stop()``): new calls are refused; in-flight inferences get
``grace_s`` to finish; then every scheduler is closed (what is left is cancelled and its
callers get UNAVAILABLE), every session's shared memory is unmapped, the listener stops, the
devices close and the Unix socket (and the directory, if the server made it) is removed.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Sequence
from concurrent import futures
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
    max_sessions: int = 256

    def __post_init__(self) -> None:
        if not self.gpus or len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"--gpus must name distinct GPUs, got {list(self.gpus)}")
        if self.max_inline_bytes < 0:
            raise ValueError("--max-inline-bytes must be >= 0")
        if self.max_sessions < 1:
            raise ValueError("--max-sessions must be >= 1")


def sched_options(policy: str) -> Any:
    """The scheduler's options for the server: thread mode (submit from many threads)."""
    from reef_rocm.sched import SchedOptions

    names = {f.name for f in dataclasses.fields(SchedOptions)}
    return SchedOptions(policy=policy, **({"threaded": True} if "threaded" in names else {}))


class ReefServer:
    """``devices``: already-open devices, one per GPU (tests pass simulated ones); default:
    open ``options.gpus`` through ``options.backend``. ``start()`` returns once listening
    (gRPC serves from its own threads); ``stop()`` shuts down as the module doc says."""

    def __init__(self, options: ServeOptions, devices: Sequence[Any] | None = None) -> None:
        self.options = options
        self.address: ListenAddress = parse_listen(options.listen)
        self.catalog = PackageCatalog(options.packages)
        self._devices = list(devices) if devices is not None else None
        self.workers: list[GpuWorker] = []
        self.service: ReefService | None = None
        self._server: grpc.Server | None = None
        self._made_dir = False
        self._bound = False
        self._stop = threading.Event()
        self._stopped = False
        self._stop_lock = threading.Lock()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        from reef_rocm.gpu import open_device

        opts = self.options
        try:
            if self._devices is None:
                self._devices = []
                for ordinal in opts.gpus:
                    self._devices.append(open_device(opts.backend, ordinal, **opts.device_options))
            sopts = sched_options(opts.policy)
            for i, dev in enumerate(self._devices):
                self.workers.append(GpuWorker(i, dev, sopts))
                log.info("GPU %d: %s (%s), policy %s", i, dev.info.name, dev.info.backend,
                         opts.policy)  # fmt: skip
            self.service = ReefService(self.workers, self.catalog, opts.policy,
                                       opts.max_inline_bytes, opts.max_sessions)  # fmt: skip
            limit = opts.max_inline_bytes + (1 << 20)  # room for the message around the tensors
            # a thread per session stream plus one per blocking call in flight; made on demand
            pool = futures.ThreadPoolExecutor(2 * opts.max_sessions + 16,
                                              thread_name_prefix="reef-rpc")  # fmt: skip
            self._server = grpc.server(
                pool,
                options=[
                    ("grpc.max_receive_message_length", limit),
                    ("grpc.max_send_message_length", limit),
                    ("grpc.so_reuseport", 0),
                    # a client host that vanishes without closing its connection (TCP) is
                    # noticed by keepalive pings, and its session ends like a killed client's
                    ("grpc.keepalive_time_ms", 60_000),
                    ("grpc.keepalive_timeout_ms", 20_000),
                    ("grpc.http2.max_pings_without_data", 0),
                ],
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
            self._server.start()
            if addr.kind == "unix":
                secure_unix_socket(addr)
        except BaseException:
            self._teardown()
            raise
        log.info("serving on %s (%d GPU(s), policy %s, packages %s)", self.address,
                 len(self.workers), opts.policy, self.catalog.root)  # fmt: skip

    def request_stop(self) -> None:
        self._stop.set()

    def wait(self) -> None:
        """Block until ``request_stop()`` (a signal handler calls it), then shut down."""
        while not self._stop.wait(0.5):  # short waits: signal handlers run in between
            pass
        self.stop()

    def stop(self) -> None:
        with self._stop_lock:
            if self._stopped:
                return
            svc = self.service
            if svc is not None:
                svc.stopping = True
                pending = [f for s in svc.live_sessions() for f in list(s.in_flight)]
                if pending:
                    log.info("shutdown: waiting up to %.1f s for %d inference(s)",
                             self.options.grace_s, len(pending))  # fmt: skip
                    _, left = futures.wait(pending, timeout=self.options.grace_s)
                    if left:
                        log.warning("shutdown: cancelling %d inference(s) still running",
                                    len(left))  # fmt: skip
            self._teardown()

    def _teardown(self) -> None:
        self._stopped = True
        # schedulers first: each finishes or cancels its work and frees every model instance
        for w in self.workers:
            w.close()
        svc = self.service
        if svc is not None:
            for s in svc.live_sessions():
                with s.lock:
                    s.ended = True
                s.events.put(None)  # ends its Connect stream
                for r in list(s.regions.values()):
                    svc._unmap(r)
                s.regions.clear()
                s.models.clear()
            with svc._lock:
                svc.sessions.clear()
            svc._retry_unmaps()
        if self._server is not None:
            self._server.stop(grace=0.5).wait(5)
        if self._bound:
            remove_unix_socket(self.address, self._made_dir)
        for w in self.workers:
            mem = w.memory_in_use()
            log.info("GPU %d closed; device memory in use %s", w.index,
                     "unknown" if mem < 0 else f"{mem} B")  # fmt: skip
        if self.workers:
            log.info("server stopped")

    # ------------------------------------------------------------------ entry points
    def run(self) -> None:
        """Serve until SIGINT or SIGTERM (the ``reef serve`` command; main thread)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        self.start()
        self.wait()

    def _on_signal(self, sig: int, _frame: Any) -> None:
        if self._stop.is_set():
            log.info("%s again: already shutting down", signal.Signals(sig).name)
            return
        log.info("%s: shutting down", signal.Signals(sig).name)
        self._stop.set()

    def __enter__(self) -> ReefServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerThread(ReefServer):
    """A server embedded in this process (tests): ``with ServerThread(opts, devices) as srv:
    Client(srv.address)``. gRPC serves from its own threads, so nothing else runs here."""

    def start(self) -> ServerThread:  # type: ignore[override]
        super().start()
        return self

    @property
    def target(self) -> str:
        return self.address.grpc_target()
