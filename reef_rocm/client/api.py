"""The Python client of `reef serve` (docs/server.md).

    from reef_rocm.client import Client
    with Client() as c:                                    # the server's default Unix socket
        with c.load("resnet152-cuda_sm_90", priority="be") as m:
            out = m.infer([x])                             # list of numpy arrays
            fut = m.infer_async([x])                       # concurrent.futures.Future

A Client is one session: its models and shared memory are released on the server when it
closes, and also when the process dies (the server sees the session's stream end).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from reef_rocm.client.shm import SharedRegion, align
from reef_rocm.errors import ReefError
from reef_rocm.proto import SESSION_METADATA_KEY, reef_pb2, reef_pb2_grpc

TRANSPORTS = ("auto", "shm", "inline")


class RemoteError(ReefError):
    """The server refused or failed a call. ``code`` is the grpc.StatusCode."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def _remote(e: grpc.RpcError) -> RemoteError:
    return RemoteError(e.code(), e.details() or "")


def default_address() -> str:
    """The server's default socket (same rule as ``reef serve``)."""
    run = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(run) / "reef" if run and Path(run).is_dir() else Path(f"/tmp/reef-{os.getuid()}")
    return f"unix:{base / 'reef.sock'}"


def _target(address: Any) -> tuple[str, bool]:
    """gRPC target and whether the server is on this host (shared memory possible)."""
    address = str(address) if address else default_address()
    if address.startswith("/"):
        address = "unix:" + address
    if address.startswith("unix:"):
        return address, True
    host = address.rpartition(":")[0].strip("[]")
    return address, host in ("127.0.0.1", "localhost", "::1", "")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class _Slot:
    """Shared memory for one in-flight request of a model: its inputs, then its outputs."""

    def __init__(self, client: Client, model: Model) -> None:
        offs, pos = [], 0
        for s in (*model.inputs, *model.outputs):
            offs.append(pos)
            pos += align(s.nbytes)
        self.region = client._register(max(pos, 1))
        rid = self.region.region_id
        n = len(model.inputs)
        ins = list(zip(offs[:n], model.inputs, strict=True))
        outs = list(zip(offs[n:], model.outputs, strict=True))
        self.in_views = [self.region.view(o, s.dtype, s.shape) for o, s in ins]
        self.out_views = [self.region.view(o, s.dtype, s.shape) for o, s in outs]
        self.in_slices = [
            reef_pb2.ShmSlice(region_id=rid, offset=o, nbytes=s.nbytes) for o, s in ins
        ]
        self.out_slices = [
            reef_pb2.ShmSlice(region_id=rid, offset=o, nbytes=s.nbytes) for o, s in outs
        ]
        # the request is the same every time this slot is used (only the tag changes): build
        # it once; the slot is used by one request at a time, so setting its tag is safe
        tensors = [
            reef_pb2.Tensor(dtype=s.dtype.name, shape=s.shape, shm=sl)
            for s, sl in zip(model.inputs, self.in_slices, strict=True)
        ]
        self.request = reef_pb2.InferRequest(model_id=model.id, inputs=tensors,
                                             outputs=self.out_slices)  # fmt: skip


class Model:
    """A model loaded for this client. ``infer``/``infer_async`` take a list of arrays (or one
    array for a single-input model) and give a list of arrays."""

    def __init__(self, client: Client, reply: Any) -> None:
        self._client = client
        self.id: int = reply.model_id
        self.name: str = reply.name
        self.priority: str = reply.priority
        self.gpu: int = reply.gpu
        self.variant: str = reply.variant
        self.inputs = [_spec(t) for t in reply.inputs]
        self.outputs = [_spec(t) for t in reply.outputs]
        self._free: list[_Slot] = []
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Model {self.name} {self.priority} id={self.id} gpu={self.gpu}>"

    # ------------------------------------------------------------------ requests
    def _check(self, inputs: Any) -> list[np.ndarray]:
        if self._closed:
            raise ReefError(f"model {self.name} is closed")
        if isinstance(inputs, np.ndarray) or not isinstance(inputs, Sequence):
            inputs = [inputs]
        if len(inputs) != len(self.inputs):
            raise ValueError(f"{self.name} takes {len(self.inputs)} input(s), got {len(inputs)}")
        arrays = []
        for i, (a, s) in enumerate(zip(inputs, self.inputs, strict=True)):
            a = np.asarray(a)
            if a.dtype != s.dtype or a.shape != s.shape:
                raise ValueError(
                    f"{self.name} input {i} ({s.name}) must be {s.dtype}{list(s.shape)}, "
                    f"got {a.dtype}{list(a.shape)}"
                )
            arrays.append(a)
        return arrays

    def _request(self, arrays: list[np.ndarray], tag: int = 0) -> tuple[Any, _Slot | None]:
        if not self._client._use_shm:
            tensors = [
                reef_pb2.Tensor(dtype=s.dtype.name, shape=s.shape,
                                inline=np.ascontiguousarray(a).tobytes())
                for a, s in zip(arrays, self.inputs, strict=True)
            ]  # fmt: skip
            return reef_pb2.InferRequest(model_id=self.id, inputs=tensors, tag=tag), None
        slot = self._take_slot()
        for v, a in zip(slot.in_views, arrays, strict=True):
            np.copyto(v, a, casting="no")
        slot.request.tag = tag
        return slot.request, slot

    def _outputs(self, reply: Any, slot: _Slot | None) -> list[np.ndarray]:
        if slot is None:
            return [
                np.frombuffer(t.inline, dtype=s.dtype).reshape(s.shape).copy()
                for t, s in zip(reply.outputs, self.outputs, strict=True)
            ]
        out = [v.copy() for v in slot.out_views]
        self._give_slot(slot)
        return out

    def infer(self, inputs: Any, timeout: float | None = None) -> list[np.ndarray]:
        """Run one inference and return its outputs."""
        req, slot = self._request(self._check(inputs))
        try:
            reply = self._client._stub.Infer(req, metadata=self._client._md, timeout=timeout)
        except grpc.RpcError as e:
            if slot is not None:
                self._give_slot(slot)
            raise _remote(e) from None
        self.last_timing = reply.timing
        return self._outputs(reply, slot)

    def infer_async(self, inputs: Any) -> Future:
        """Queue one inference; the future gives its outputs (or raises RemoteError)."""
        arrays = self._check(inputs)
        c = self._client
        tag = next(c._tags)
        req, slot = self._request(arrays, tag)
        fut: Future = Future()
        fut.set_running_or_notify_cancel()

        def complete(comp: Any) -> None:
            if comp.code != 0:
                if slot is not None:
                    self._give_slot(slot)
                fut.set_exception(RemoteError(grpc.StatusCode(_code(comp.code)), comp.message))
                return
            try:
                fut.set_result(self._outputs(comp.reply, slot))
            except BaseException as exc:  # noqa: BLE001
                fut.set_exception(exc)

        c._waiting[tag] = complete
        try:
            c._stub.InferAsync(req, metadata=c._md)
        except grpc.RpcError as e:
            c._waiting.pop(tag, None)
            if slot is not None:
                self._give_slot(slot)
            fut.set_exception(_remote(e))
        return fut

    # ------------------------------------------------------------------ shared memory slots
    def _take_slot(self) -> _Slot:
        with self._lock:
            if self._free:
                return self._free.pop()
        slot = _Slot(self._client, self)
        with self._lock:
            self._slots.append(slot)
        return slot

    def _give_slot(self, slot: _Slot) -> None:
        with self._lock:
            self._free.append(slot)

    # ------------------------------------------------------------------ release
    def close(self) -> None:
        """Unload the model on the server and release its shared memory."""
        if self._closed:
            return
        self._closed = True
        c = self._client
        c._models.discard(self)
        try:
            if not c._closed_stream:
                c._stub.Unload(reef_pb2.UnloadRequest(model_id=self.id), metadata=c._md)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise _remote(e) from None
        finally:
            for s in self._slots:
                c._unregister(s.region)
            self._slots.clear()
            self._free.clear()

    unload = close

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def message_dict(msg: Any) -> dict[str, Any]:
    """A protobuf message as plain Python data: every field present (defaults included),
    64-bit integers as ints (json_format would give strings)."""
    out: dict[str, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            out[f.name] = dict(v)
        elif f.is_repeated:
            out[f.name] = [message_dict(x) if f.message_type else x for x in v]
        elif f.message_type is not None:
            out[f.name] = message_dict(v)
        else:
            out[f.name] = v
    return out


def _spec(t: Any) -> TensorSpec:
    return TensorSpec(t.name, tuple(t.shape), np.dtype(t.dtype))


def _code(value: int) -> tuple[int, str]:
    for c in grpc.StatusCode:
        if c.value[0] == value:
            return c.value
    return grpc.StatusCode.UNKNOWN.value


class Client:
    """One session with a `reef serve` server.

    ``address``: ``unix:PATH`` (or a path), ``HOST:PORT``; default: the server's default socket.
    ``name``: shown in the server's status and logs. ``workload``: models of one workload share
    a GPU (default: this client alone). ``gpu``: pin this client's models to one GPU.
    ``transport``: "shm" (tensors through shared memory), "inline" (in the messages), "auto"
    (shm when the server is on this host).
    """

    def __init__(
        self, address: str | None = None, *, name: str = "", workload: str = "",
        gpu: int | None = None, transport: str = "auto", connect_timeout: float = 30.0,
    ) -> None:  # fmt: skip
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        target, local = _target(address)
        if transport == "shm" and not local:
            raise ValueError(f"shared memory needs a server on this host; {target} is not")
        self.address = target
        self._use_shm = transport == "shm" or (transport == "auto" and local)
        self._channel = grpc.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", -1),
                     ("grpc.max_send_message_length", -1)],
        )  # fmt: skip
        self._stub = reef_pb2_grpc.ReefStub(self._channel)
        self._tags = itertools.count(1)
        self._waiting: dict[int, Any] = {}
        self._models: set[Model] = set()
        self._regions: dict[int, SharedRegion] = {}
        self._closed_stream = False
        req = reef_pb2.ConnectRequest(client_name=name, workload=workload)
        if gpu is not None:
            req.gpu = gpu
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout)
            self._events = self._stub.Connect(req)
            first = next(self._events)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise ReefError(f"no reef server answers at {target}") from None
        except grpc.RpcError as e:
            self._channel.close()
            raise _remote(e) from None
        w = first.welcome
        self.session_id: str = w.session_id
        self.max_inline_bytes: int = w.max_inline_bytes
        self.policy: str = w.policy
        self.gpus = [message_dict(g) for g in w.gpus]
        self._md = ((SESSION_METADATA_KEY, w.token),)
        self._reader = threading.Thread(target=self._read_events, name="reef-client-events",
                                        daemon=True)  # fmt: skip
        self._reader.start()

    def _read_events(self) -> None:
        err: RemoteError | None = None
        try:
            for ev in self._events:
                if ev.WhichOneof("event") == "completion":
                    cb = self._waiting.pop(ev.completion.tag, None)
                    if cb is not None:
                        cb(ev.completion)
        except grpc.RpcError as e:
            err = _remote(e)
        self._closed_stream = True
        err = err or RemoteError(grpc.StatusCode.UNAVAILABLE, "the session ended")
        fail = reef_pb2.Completion(code=err.code.value[0], message=err.details)
        for tag in list(self._waiting):
            cb = self._waiting.pop(tag, None)
            if cb is not None:
                cb(fail)

    # ------------------------------------------------------------------ calls
    def load(
        self, package: str | os.PathLike[str] | None = None, *, zoo: str | None = None,
        target: str = "", priority: str = "be", gpu: int | None = None,
    ) -> Model:  # fmt: skip
        """Load a package (a path inside the server's package directory) or a zoo model by
        name (+ target, default the GPU's arch) as "rt" or "be"."""
        if (package is None) == (zoo is None):
            raise ValueError("give a package path or zoo=NAME")
        req = reef_pb2.LoadRequest(priority=priority)
        if package is not None:
            req.path = os.fspath(package)
        else:
            req.zoo.name = zoo
            req.zoo.target = target
        if gpu is not None:
            req.gpu = gpu
        try:
            reply = self._stub.Load(req, metadata=self._md)
        except grpc.RpcError as e:
            raise _remote(e) from None
        m = Model(self, reply)
        self._models.add(m)
        return m

    def status(self) -> dict[str, Any]:
        """The server's status: GPUs, policy, models, queue depths, preemptions, memory."""
        try:
            reply = self._stub.Status(reef_pb2.StatusRequest(), metadata=self._md)
        except grpc.RpcError as e:
            raise _remote(e) from None
        return message_dict(reply)

    def _register(self, size: int) -> SharedRegion:
        r = SharedRegion(size)
        try:
            reply = self._stub.RegisterShm(reef_pb2.RegisterShmRequest(name=r.name, size=size),
                                           metadata=self._md)  # fmt: skip
        except grpc.RpcError as e:
            r.close()
            raise _remote(e) from None
        r.unlink()  # the server has it mapped: the name is not needed any more
        r.region_id = reply.region_id
        self._regions[reply.region_id] = r
        return r

    def _unregister(self, r: SharedRegion) -> None:
        self._regions.pop(r.region_id, None)
        try:
            if not self._closed_stream:
                self._stub.UnregisterShm(reef_pb2.UnregisterShmRequest(region_id=r.region_id),
                                         metadata=self._md)  # fmt: skip
        except grpc.RpcError:
            pass  # the session is gone: the server released it
        r.close()

    # ------------------------------------------------------------------ release
    def close(self) -> None:
        """Unload every model, unmap every region and end the session."""
        if getattr(self, "_events", None) is None:
            return
        try:
            for m in list(self._models):
                try:
                    m.close()
                except RemoteError:
                    pass
        finally:
            self._events.cancel()
            self._reader.join(timeout=10)
            for r in list(self._regions.values()):
                r.close()
            self._regions.clear()
            self._channel.close()
            self._events = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client session={self.session_id} {self.address}>"
