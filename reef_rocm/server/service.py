"""The gRPC service (reef_rocm/proto/reef.proto): sessions, validation, shared memory,
placement, and the hand-off to each GPU's scheduler.

Handlers run on gRPC's thread pool (the synchronous server): a blocking Infer waits on its
scheduler future in its own thread, which the scheduler thread wakes directly; no event loop
sits between them, which keeps the RT path short. Scheduler future callbacks (run on the
scheduler thread) only enqueue; the reply work happens on the session's own thread.

Every request is checked completely before anything changes: a bad one gets a gRPC status
naming the problem and leaves the server as it was. Scheduler futures are never cancelled from
here (a cancelled future would make the scheduler's ``set_result`` fail): a caller that goes
away leaves its inference to complete, and the result is discarded.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

import grpc
import numpy as np

from reef_rocm import __version__
from reef_rocm.errors import (
    CodeObjectError,
    GpuError,
    ModelError,
    PackageError,
    ReefError,
    UnsupportedError,
)
from reef_rocm.proto import SESSION_METADATA_KEY, reef_pb2, reef_pb2_grpc
from reef_rocm.server.catalog import OutsideCatalog, PackageCatalog, check_target
from reef_rocm.server.gpus import GpuFailed, GpuWorker, LoadFailed
from reef_rocm.server.placement import GpuLoad, PlacementError, place
from reef_rocm.server.session import ServedModel, Session, TensorInfo
from reef_rocm.server.shm import ShmError, ShmRegion

log = logging.getLogger("reef.serve")

MAX_REGIONS_PER_SESSION = 4096
MAX_MODELS_PER_SESSION = 256


class RequestError(Exception):
    """A request the server refuses, with the gRPC status to refuse it with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    from reef_rocm.sched import SchedulerClosed

    C = grpc.StatusCode
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, RequestError):
        return exc.code, msg
    if isinstance(exc, ShmError | PlacementError):
        return C[exc.code], msg
    if isinstance(exc, GpuFailed | SchedulerClosed):
        return C.UNAVAILABLE, msg
    if isinstance(exc, OutsideCatalog):
        return C.PERMISSION_DENIED, msg
    if isinstance(exc, ModelError):
        return C.NOT_FOUND, msg
    if isinstance(exc, PackageError | CodeObjectError | LoadFailed | ValueError | TypeError):
        return C.INVALID_ARGUMENT, msg
    if isinstance(exc, UnsupportedError):
        return C.FAILED_PRECONDITION, msg
    if isinstance(exc, GpuError) and "out of memory" in msg.lower():
        return C.RESOURCE_EXHAUSTED, msg
    if isinstance(exc, ReefError):
        return C.INTERNAL, msg
    return C.INTERNAL, f"internal error: {type(exc).__name__}: {msg}"


def _rpc(fn: Callable) -> Callable:
    """Unary handlers: map refusals and errors onto gRPC statuses."""

    @functools.wraps(fn)
    def wrapper(self: ReefService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            code, msg = _status_of(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", fn.__name__)
            else:
                log.debug("%s refused: %s %s", fn.__name__, code.name, msg)
            context.abort(code, msg)

    return wrapper


class _Job:
    """One validated inference: inputs as arrays, where each output goes."""

    __slots__ = ("model", "inputs", "out_views", "t0")

    def __init__(self, model: ServedModel, inputs: list[np.ndarray],
                 out_views: list[tuple[np.ndarray, Any] | None], t0: int) -> None:  # fmt: skip
        self.model, self.inputs, self.out_views, self.t0 = model, inputs, out_views, t0

    def release(self) -> None:
        """Drop the views of shared memory, so the region can be unmapped."""
        self.inputs = []
        self.out_views = []


class ReefService(reef_pb2_grpc.ReefServicer):
    def __init__(
        self, workers: list[GpuWorker], catalog: PackageCatalog, policy: str,
        max_inline_bytes: int, max_sessions: int = 256,
    ) -> None:  # fmt: skip
        self.workers = workers
        self.catalog = catalog
        self.policy = policy
        self.max_inline_bytes = max_inline_bytes
        self.max_sessions = max_sessions
        self.sessions: dict[str, Session] = {}  # by token
        self.stopping = False
        self._lock = threading.Lock()  # sessions table and the unmap-later list
        self._place_lock = threading.Lock()  # placement + load: one decision at a time
        self._unmapped_later: list[ShmRegion] = []

    # ------------------------------------------------------------------ sessions
    def _session(self, context: grpc.ServicerContext) -> Session:
        if self.stopping:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        token = None
        for k, v in context.invocation_metadata() or ():
            if k == SESSION_METADATA_KEY:
                token = v
                break
        if not token:
            raise RequestError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"no session: call Connect first and send its token as {SESSION_METADATA_KEY!r} "
                "metadata",
            )
        s = self.sessions.get(token)
        if s is None or s.ended:
            raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "unknown or ended session")
        return s

    def Connect(self, request: Any, context: grpc.ServicerContext):  # noqa: N802
        if self.stopping:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        gpu = request.gpu if request.HasField("gpu") else None
        if gpu is not None and not 0 <= gpu < len(self.workers):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"no GPU {gpu}: this server runs GPUs 0..{len(self.workers) - 1}",
            )
        s = Session(request.client_name[:200], request.workload[:200], gpu)
        with self._lock:
            if len(self.sessions) >= self.max_sessions:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this server takes at most {self.max_sessions} sessions (--max-sessions)",
                )
            self.sessions[s.token] = s
        # the RPC ends when the client closes the stream, its channel drops or it dies
        if not context.add_callback(lambda: s.events.put(None)):
            s.events.put(None)  # it already ended: the loop below ends the session at once
        log.info("session %s opened: client %r, workload %r, peer %s", s.id, s.client,
                 s.workload, context.peer())  # fmt: skip
        try:
            yield reef_pb2.SessionEvent(
                welcome=reef_pb2.Welcome(
                    session_id=s.id, token=s.token, server_version=__version__,
                    max_inline_bytes=self.max_inline_bytes, policy=self.policy,
                    gpus=[self._gpu_info(w) for w in self.workers],
                )
            )  # fmt: skip
            while True:
                item = s.events.get()
                if item is None:  # stream over (client side) or server shutdown
                    break
                c = self._completion(s, *item)
                if c is not None:
                    yield reef_pb2.SessionEvent(completion=c)
        finally:
            reason = (
                "server shutdown"
                if self.stopping
                else "its stream ended (client closed it or went away)"
            )
            self.end_session(s, reason)

    def end_session(self, s: Session, reason: str) -> None:
        """Release everything the session holds: wait for its in-flight inferences (finished
        or failed by the scheduler; results discarded), unload its models, unmap its regions.
        Idempotent; safe from any thread."""
        with s.lock:
            if s.ended:
                return
            s.ended = True  # from here on no request of this session reaches a scheduler
            flying = list(s.in_flight)
        with self._lock:
            self.sessions.pop(s.token, None)
        if flying:
            wait(flying)
        models = list(s.models.values())
        for m in models:
            try:
                m.gpu.unload(m.handle)
            except Exception as e:  # noqa: BLE001 - release the rest anyway
                log.warning("session %s: unloading %s failed: %s", s.id, m.name, e)
        s.models.clear()
        while True:  # completions nobody will read: drop their views of the regions
            try:
                item = s.events.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].release()
        regions = list(s.regions.values())
        for r in regions:
            self._unmap(r)
        s.regions.clear()
        self._retry_unmaps()
        log.info("session %s (%s) ended: %s; released %d model(s), %d shm region(s); "
                 "%d inference(s) were in flight (finished, results discarded)",
                 s.id, s.client, reason, len(models), len(regions), len(flying))  # fmt: skip

    def _unmap(self, r: ShmRegion) -> None:
        if not r.close():
            with self._lock:
                self._unmapped_later.append(r)

    def _retry_unmaps(self) -> None:
        with self._lock:
            self._unmapped_later = [r for r in self._unmapped_later if not r.retry_close()]

    @property
    def mapped_regions(self) -> int:
        with self._lock:
            sessions = list(self.sessions.values())
            later = len(self._unmapped_later)
        return sum(len(s.regions) for s in sessions) + later

    def live_sessions(self) -> list[Session]:
        with self._lock:
            return list(self.sessions.values())

    # ------------------------------------------------------------------ models
    def _loads(self) -> list[GpuLoad]:
        loads = []
        sessions = self.live_sessions()
        for w in self.workers:
            workloads, models = set(), 0
            for s in sessions:
                n = sum(1 for m in list(s.models.values()) if m.gpu is w)
                if n:
                    workloads.add(s.workload)
                    models += n
            loads.append(GpuLoad(w.index, w.healthy, frozenset(workloads), models, w.error))
        return loads

    @_rpc
    def Load(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        s = self._session(context)
        if request.priority not in ("rt", "be"):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"priority must be 'rt' or 'be', got {request.priority!r}",
            )
        which = request.WhichOneof("source")
        if which is None:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, "name a package: path or zoo model"
            )
        if len(s.models) >= MAX_MODELS_PER_SESSION:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a session may hold at most {MAX_MODELS_PER_SESSION} models",
            )
        pinned = request.gpu if request.HasField("gpu") else s.gpu
        with self._place_lock:
            w = self.workers[place(self._loads(), s.workload, pinned)]
            if which == "path":
                pkg = self.catalog.by_path(request.path)
            else:
                pkg = self.catalog.by_name(request.zoo.name, request.zoo.target,
                                           w.device.info.arch)  # fmt: skip
            check_target(pkg, w.device)
            handle = w.load(pkg, request.priority, s.label)
            m = ServedModel(
                handle, w, handle.name, handle.priority, getattr(handle, "variant", ""),
                [_info(t) for t in handle.input_specs], [_info(t) for t in handle.output_specs],
            )  # fmt: skip
            with s.lock:
                ended = s.ended
                if not ended:
                    s.add_model(m)
            if ended:  # the client left while its model loaded
                w.unload(handle)
                raise RequestError(grpc.StatusCode.CANCELLED, "session ended")
        log.info("session %s: loaded %s as %s on GPU %d (model %d)", s.id, m.name, m.priority,
                 w.index, m.id)  # fmt: skip
        return reef_pb2.LoadReply(
            model_id=m.id, name=m.name, priority=m.priority, gpu=w.index, variant=m.variant,
            inputs=[_spec(t) for t in m.inputs], outputs=[_spec(t) for t in m.outputs],
        )  # fmt: skip

    def _model(self, s: Session, model_id: int) -> ServedModel:
        m = s.models.get(model_id)
        if m is None:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"model {model_id} is not loaded in this session (never loaded, or unloaded)",
            )
        return m

    @_rpc
    def Unload(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        s = self._session(context)
        with s.lock:
            m = self._model(s, request.model_id)
            del s.models[m.id]  # new requests for it fail from here on
            flying = list(m.in_flight)
        if flying:
            wait(flying)
        m.gpu.unload(m.handle)
        log.info("session %s: unloaded %s (model %d)", s.id, m.name, m.id)
        return reef_pb2.UnloadReply()

    # ------------------------------------------------------------------ shared memory
    @_rpc
    def RegisterShm(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        s = self._session(context)
        if len(s.regions) >= MAX_REGIONS_PER_SESSION:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a session may map at most {MAX_REGIONS_PER_SESSION} shm regions",
            )
        r = s.new_region(request.name, int(request.size))
        if s.ended:  # raced with the end of the session
            s.regions.pop(r.id, None)
            self._unmap(r)
            raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "unknown or ended session")
        return reef_pb2.RegisterShmReply(region_id=r.id, size=r.size)

    @_rpc
    def UnregisterShm(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        s = self._session(context)
        r = s.regions.pop(request.region_id, None)
        if r is None:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"shm region {request.region_id} is not registered in this session",
            )
        self._unmap(r)
        return reef_pb2.UnregisterShmReply()

    # ------------------------------------------------------------------ inference
    def _region(self, s: Session, region_id: int) -> ShmRegion:
        r = s.regions.get(region_id)
        if r is None:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"shm region {region_id} is not registered in this session",
            )
        return r

    def _prepare(self, s: Session, request: Any) -> _Job:
        t0 = time.perf_counter_ns()
        m = self._model(s, request.model_id)
        m.gpu.check()
        C = grpc.StatusCode
        if len(request.inputs) != len(m.inputs):
            raise RequestError(
                C.INVALID_ARGUMENT,
                f"{m.name} takes {len(m.inputs)} input(s) "
                f"({', '.join(t.name for t in m.inputs)}), got {len(request.inputs)}",
            )
        if request.outputs and len(request.outputs) != len(m.outputs):
            raise RequestError(
                C.INVALID_ARGUMENT,
                f"{m.name} has {len(m.outputs)} output(s); give a shm slice for each or none "
                f"(all inline), got {len(request.outputs)}",
            )
        inline_bytes = 0
        arrays: list[np.ndarray] = []
        for i, (t, spec) in enumerate(zip(request.inputs, m.inputs, strict=True)):
            if tuple(t.shape) != spec.shape or (
                t.dtype != spec.dtype_name and not _same_dtype(t.dtype, spec.dtype)
            ):
                raise _tensor_mismatch(_what(m, "input", i, spec), t, spec)
            kind = t.WhichOneof("data")
            if kind == "inline":
                inline_bytes += len(t.inline)
                if len(t.inline) != spec.nbytes:
                    raise RequestError(
                        C.INVALID_ARGUMENT,
                        f"{_what(m, 'input', i, spec)}: {len(t.inline)} bytes of data for a "
                        f"tensor of {spec.nbytes}",
                    )
                arrays.append(np.frombuffer(t.inline, dtype=spec.dtype).reshape(spec.shape))
            elif kind == "shm":
                arrays.append(self._slice_view(s, t.shm, spec, m, "input", i))
            else:
                what = _what(m, "input", i, spec)
                raise RequestError(C.INVALID_ARGUMENT, f"{what}: no data (inline or shm)")
        out_views: list[tuple[np.ndarray, Any] | None] = []
        if request.outputs:
            for i, (sl, spec) in enumerate(zip(request.outputs, m.outputs, strict=True)):
                out_views.append((self._slice_view(s, sl, spec, m, "output", i), sl))
        else:
            inline_bytes += sum(t.nbytes for t in m.outputs)
            out_views = [None] * len(m.outputs)
        if inline_bytes > self.max_inline_bytes:
            raise RequestError(
                C.RESOURCE_EXHAUSTED,
                f"{inline_bytes} bytes of inline tensors (inputs and inline outputs) exceed "
                f"this server's limit of {self.max_inline_bytes}; pass them through shared "
                "memory (RegisterShm)",
            )
        return _Job(m, arrays, out_views, t0)

    def _slice_view(
        self, s: Session, sl: Any, spec: TensorInfo, m: ServedModel, kind: str, i: int
    ) -> np.ndarray:
        if sl.nbytes != spec.nbytes:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{_what(m, kind, i, spec)}: shm slice of {sl.nbytes} bytes for a tensor of "
                f"{spec.nbytes}",
            )
        r = self._region(s, sl.region_id)
        try:
            return r.view(sl.offset, sl.nbytes, spec.dtype, spec.shape)
        except ShmError as e:
            raise ShmError(f"{_what(m, kind, i, spec)}: {e}", e.code) from None

    def _submit(self, s: Session, job: _Job) -> Future:
        m = job.model
        with s.lock:  # against end_session/Unload: nothing new once they took their snapshot
            if s.ended:
                raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "unknown or ended session")
            if s.models.get(m.id) is not m:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND, f"model {m.id} was unloaded in the meantime"
                )
            fut = m.gpu.submit(m.handle, job.inputs)  # ValueError for what _prepare let through
            s.in_flight.add(fut)
            m.in_flight.add(fut)

        def forget(f: Future) -> None:  # on the scheduler thread: bookkeeping only
            s.in_flight.discard(f)
            m.in_flight.discard(f)

        fut.add_done_callback(forget)
        return fut

    def _reply(self, job: _Job, res: Any) -> Any:
        outs = []
        for arr, target, spec in zip(res.outputs, job.out_views, job.model.outputs, strict=True):
            if target is None:
                data = np.ascontiguousarray(arr).tobytes()
                outs.append(reef_pb2.Tensor(dtype=spec.dtype_name, shape=spec.shape, inline=data))
            else:
                view, sl = target
                view[...] = arr
                outs.append(reef_pb2.Tensor(dtype=spec.dtype_name, shape=spec.shape, shm=sl))
        rec = res.record
        timing = reef_pb2.Timing(
            server_us=(time.perf_counter_ns() - job.t0) / 1e3,
            scheduler_us=rec.latency_us or 0.0, preemptions=rec.preemptions,
        )  # fmt: skip
        return reef_pb2.InferReply(outputs=outs, timing=timing)

    @_rpc
    def Infer(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        s = self._session(context)
        job = self._prepare(s, request)
        fut = self._submit(s, job)
        res = fut.result()  # a caller that left does not cancel it: the reply is dropped
        try:
            return self._reply(job, res)
        finally:
            job.release()

    @_rpc
    def InferAsync(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        s = self._session(context)
        tag = request.tag
        job = self._prepare(s, request)
        with s.lock:
            if tag in s.async_tags:
                raise RequestError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"tag {tag} is already in flight in this session",
                )
            s.async_tags.add(tag)
        try:
            fut = self._submit(s, job)
        except BaseException:
            s.async_tags.discard(tag)
            raise

        def done(f: Future) -> None:
            # on the scheduler thread: only enqueue; the session's stream thread builds the reply
            if s.ended:
                job.release()  # nobody to tell: discarded
            else:
                s.events.put((tag, job, f))

        fut.add_done_callback(done)
        return reef_pb2.InferAccepted(tag=tag)

    def _completion(self, s: Session, tag: int, job: _Job, fut: Future) -> Any:
        s.async_tags.discard(tag)
        exc = fut.exception()
        try:
            if exc is None:
                try:
                    return reef_pb2.Completion(
                        tag=tag, code=0, reply=self._reply(job, fut.result())
                    )
                except Exception as e:  # noqa: BLE001
                    exc = e
            code, msg = _status_of(exc)
            return reef_pb2.Completion(tag=tag, code=code.value[0], message=msg)
        finally:
            job.release()

    # ------------------------------------------------------------------ status
    def _gpu_info(self, w: GpuWorker) -> Any:
        info = w.device.info
        return reef_pb2.GpuInfo(
            index=w.index, name=info.name, backend=info.backend, arch=info.arch,
            simulated=bool(info.extra.get("simulated")),
        )  # fmt: skip

    @_rpc
    def Status(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        me = self._session(context)
        self._retry_unmaps()
        sessions = self.live_sessions()
        gpus = []
        for w in self.workers:
            st = w.status()
            models = [
                reef_pb2.ModelStatus(model_id=m.id, name=m.name, priority=m.priority,
                                     client=s.client, workload=s.workload, mine=s is me)
                for s in sessions for m in list(s.models.values()) if m.gpu is w
            ]  # fmt: skip
            gpus.append(
                reef_pb2.GpuStatus(
                    info=self._gpu_info(w), healthy=w.healthy, error=w.error,
                    policy=st.policy if st else self.policy, models=models,
                    queue_depths={k: int(v) for k, v in (st.queue_depths if st else {}).items()},
                    preemptions=int(st.preemptions) if st else 0,
                    memory_in_use_bytes=w.memory_in_use(),
                    memory_total_bytes=int(w.device.info.memory_bytes),
                    workloads=sorted({m.workload for m in models}),
                )
            )  # fmt: skip
        return reef_pb2.StatusReply(
            server_version=__version__, policy=self.policy, gpus=gpus,
            sessions=len(sessions), shm_regions=self.mapped_regions,
            in_flight=sum(len(s.in_flight) for s in sessions),
        )  # fmt: skip


def _what(m: ServedModel, kind: str, i: int, spec: TensorInfo) -> str:
    return f"{m.name} {kind} {i} ({spec.name})"


def _tensor_mismatch(what: str, t: Any, spec: TensorInfo) -> RequestError:
    try:
        np.dtype(t.dtype)
    except TypeError:
        return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{what}: unknown dtype {t.dtype!r}")
    return RequestError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{what} must be {spec.dtype}{list(spec.shape)}, got {t.dtype}{list(t.shape)}",
    )


def _same_dtype(name: str, dtype: np.dtype) -> bool:
    """An alias of the model's dtype ("f4" for float32) is the same dtype."""
    try:
        return np.dtype(name) == dtype
    except TypeError:
        return False


def _info(t: Any) -> TensorInfo:
    return TensorInfo(t.name, tuple(t.shape), np.dtype(t.dtype))


def _spec(t: TensorInfo) -> Any:
    return reef_pb2.TensorSpec(name=t.name, shape=t.shape, dtype=t.dtype_name)
