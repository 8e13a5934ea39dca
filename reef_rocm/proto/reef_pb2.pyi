from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("client_name", "workload", "gpu")
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    client_name: str
    workload: str
    gpu: int
    def __init__(self, client_name: _Optional[str] = ..., workload: _Optional[str] = ..., gpu: _Optional[int] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("welcome", "completion")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    completion: Completion
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., completion: _Optional[_Union[Completion, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "token", "server_version", "max_inline_bytes", "policy", "gpus")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_INLINE_BYTES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    token: str
    server_version: str
    max_inline_bytes: int
    policy: str
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInfo]
    def __init__(self, session_id: _Optional[str] = ..., token: _Optional[str] = ..., server_version: _Optional[str] = ..., max_inline_bytes: _Optional[int] = ..., policy: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[GpuInfo, _Mapping]]] = ...) -> None: ...

class GpuInfo(_message.Message):
    __slots__ = ("index", "name", "backend", "arch", "simulated")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    backend: str
    arch: str
    simulated: bool
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., backend: _Optional[str] = ..., arch: _Optional[str] = ..., simulated: _Optional[bool] = ...) -> None: ...

class ZooModel(_message.Message):
    __slots__ = ("name", "target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: str
    def __init__(self, name: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class LoadRequest(_message.Message):
    __slots__ = ("path", "zoo", "priority", "gpu")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ZOO_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    path: str
    zoo: ZooModel
    priority: str
    gpu: int
    def __init__(self, path: _Optional[str] = ..., zoo: _Optional[_Union[ZooModel, _Mapping]] = ..., priority: _Optional[str] = ..., gpu: _Optional[int] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ...) -> None: ...

class LoadReply(_message.Message):
    __slots__ = ("model_id", "name", "priority", "gpu", "inputs", "outputs", "variant")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    model_id: int
    name: str
    priority: str
    gpu: int
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    variant: str
    def __init__(self, model_id: _Optional[int] = ..., name: _Optional[str] = ..., priority: _Optional[str] = ..., gpu: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., variant: _Optional[str] = ...) -> None: ...

class UnloadRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: int
    def __init__(self, model_id: _Optional[int] = ...) -> None: ...

class UnloadReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterShmRequest(_message.Message):
    __slots__ = ("name", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class RegisterShmReply(_message.Message):
    __slots__ = ("region_id", "size")
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    size: int
    def __init__(self, region_id: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class UnregisterShmRequest(_message.Message):
    __slots__ = ("region_id",)
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    def __init__(self, region_id: _Optional[int] = ...) -> None: ...

class UnregisterShmReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShmSlice(_message.Message):
    __slots__ = ("region_id", "offset", "nbytes")
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    offset: int
    nbytes: int
    def __init__(self, region_id: _Optional[int] = ..., offset: _Optional[int] = ..., nbytes: _Optional[int] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "inline", "shm")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    SHM_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    inline: bytes
    shm: ShmSlice
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., inline: _Optional[bytes] = ..., shm: _Optional[_Union[ShmSlice, _Mapping]] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("model_id", "inputs", "outputs", "tag")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    model_id: int
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    outputs: _containers.RepeatedCompositeFieldContainer[ShmSlice]
    tag: int
    def __init__(self, model_id: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[ShmSlice, _Mapping]]] = ..., tag: _Optional[int] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("server_us", "scheduler_us", "preemptions")
    SERVER_US_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_US_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    server_us: float
    scheduler_us: float
    preemptions: int
    def __init__(self, server_us: _Optional[float] = ..., scheduler_us: _Optional[float] = ..., preemptions: _Optional[int] = ...) -> None: ...

class InferReply(_message.Message):
    __slots__ = ("outputs", "timing")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    timing: Timing
    def __init__(self, outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ...) -> None: ...

class InferAccepted(_message.Message):
    __slots__ = ("tag",)
    TAG_FIELD_NUMBER: _ClassVar[int]
    tag: int
    def __init__(self, tag: _Optional[int] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("tag", "code", "message", "reply")
    TAG_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    tag: int
    code: int
    message: str
    reply: InferReply
    def __init__(self, tag: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., reply: _Optional[_Union[InferReply, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("model_id", "name", "priority", "client", "workload", "mine")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    MINE_FIELD_NUMBER: _ClassVar[int]
    model_id: int
    name: str
    priority: str
    client: str
    workload: str
    mine: bool
    def __init__(self, model_id: _Optional[int] = ..., name: _Optional[str] = ..., priority: _Optional[str] = ..., client: _Optional[str] = ..., workload: _Optional[str] = ..., mine: _Optional[bool] = ...) -> None: ...

class GpuStatus(_message.Message):
    __slots__ = ("info", "healthy", "error", "policy", "models", "queue_depths", "preemptions", "memory_in_use_bytes", "memory_total_bytes", "workloads")
    class QueueDepthsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    INFO_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTHS_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_IN_USE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    info: GpuInfo
    healthy: bool
    error: str
    policy: str
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    queue_depths: _containers.ScalarMap[str, int]
    preemptions: int
    memory_in_use_bytes: int
    memory_total_bytes: int
    workloads: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, info: _Optional[_Union[GpuInfo, _Mapping]] = ..., healthy: _Optional[bool] = ..., error: _Optional[str] = ..., policy: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ..., queue_depths: _Optional[_Mapping[str, int]] = ..., preemptions: _Optional[int] = ..., memory_in_use_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., workloads: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("server_version", "policy", "gpus", "sessions", "shm_regions", "in_flight")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SHM_REGIONS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    policy: str
    gpus: _containers.RepeatedCompositeFieldContainer[GpuStatus]
    sessions: int
    shm_regions: int
    in_flight: int
    def __init__(self, server_version: _Optional[str] = ..., policy: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[GpuStatus, _Mapping]]] = ..., sessions: _Optional[int] = ..., shm_regions: _Optional[int] = ..., in_flight: _Optional[int] = ...) -> None: ...
