"""HSA runtime start/stop and agent discovery (name, gfx target, CUs, wavefront, XCCs)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from reef_rocm.errors import BackendUnavailable
from reef_rocm.rocm.hsa import _ffi


@dataclass(frozen=True)
class AgentProps:
    """What the runtime reports about one agent (GPU or CPU)."""

    handle: int
    device_type: int  # _ffi.HSA_DEVICE_TYPE_GPU / _CPU
    name: str  # ROCr's agent name: the gfx target on GPU agents ("gfx942")
    product_name: str  # marketing name ("AMD Instinct MI300X")
    compute_units: int
    wavefront_size: int
    xcc_count: int  # 1 unless the runtime reports several (MI300: 8 per full device)
    shader_engines: int
    shader_arrays_per_se: int
    queue_min_size: int
    queue_max_size: int
    workgroup_max_size: int
    node: int  # HSA node id
    driver_node_id: int  # KFD topology node
    pci_domain: int
    bdfid: int  # bus << 8 | device << 3 | function

    @property
    def is_gpu(self) -> bool:
        return self.device_type == _ffi.HSA_DEVICE_TYPE_GPU

    @property
    def gfx_target(self) -> str:
        """The compile target (the part before feature flags such as ':sramecc+')."""
        return self.name.split(":", 1)[0]

    @property
    def pci_bus(self) -> int:
        return (self.bdfid >> 8) & 0xFF

    @property
    def pci_device(self) -> int:
        return (self.bdfid >> 3) & 0x1F


class HsaRuntime:
    """``hsa_init`` on construction, ``hsa_shut_down`` on ``close()`` (reference counted by
    the runtime itself, so several HsaRuntime objects may coexist)."""

    def __init__(self, lib: Any = None, dev_kfd: str = _ffi.DEV_KFD) -> None:
        self.lib = lib if lib is not None else _ffi.library()
        status = self.lib.hsa_init()
        if status != _ffi.HSA_STATUS_SUCCESS:
            why = _ffi.missing_kfd_reason(dev_kfd)
            raise BackendUnavailable(
                f"hsa_init failed ({self.lib.status_text(status)})"
                + (f": {why}" if why else ": the HSA runtime found no usable AMD GPU")
            )
        self._open = True
        self._agents: list[AgentProps] | None = None

    def close(self) -> None:
        if self._open:
            self._open = False
            self.lib.check("hsa_shut_down", self.lib.hsa_shut_down())

    def __enter__(self) -> HsaRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self) -> str:
        major, minor = ctypes.c_uint16(), ctypes.c_uint16()
        self.lib.check("hsa_system_get_info", self.lib.hsa_system_get_info(
            _ffi.HSA_SYSTEM_INFO_VERSION_MAJOR, ctypes.byref(major)))
        self.lib.check("hsa_system_get_info", self.lib.hsa_system_get_info(
            _ffi.HSA_SYSTEM_INFO_VERSION_MINOR, ctypes.byref(minor)))
        return f"{major.value}.{minor.value}"

    def agents(self) -> list[AgentProps]:
        """Every agent, in the runtime's order (CPU agents first on ROCr)."""
        if self._agents is None:
            handles: list[int] = []

            def collect(agent: _ffi.Handle, _data: Any) -> int:
                handles.append(agent.handle)
                return _ffi.HSA_STATUS_SUCCESS

            cb = _ffi.AgentCallback(collect)
            self.lib.check("hsa_iterate_agents", self.lib.hsa_iterate_agents(cb, None))
            self._agents = [self._props(h) for h in handles]
        return list(self._agents)

    def gpu_agents(self) -> list[AgentProps]:
        return [a for a in self.agents() if a.is_gpu]

    def cpu_agent(self) -> AgentProps:
        cpus = [a for a in self.agents() if not a.is_gpu]
        if not cpus:
            raise BackendUnavailable("the HSA runtime reports no CPU agent")
        return cpus[0]

    # --- agent properties --------------------------------------------------------------
    def _info(self, handle: int, attr: int, ctype: Any, optional: bool = False) -> Any:
        value = ctype()
        status = self.lib.hsa_agent_get_info(_ffi.Handle(handle), attr, ctypes.byref(value))
        if status != _ffi.HSA_STATUS_SUCCESS:
            if optional:
                return None
            self.lib.check(f"hsa_agent_get_info({attr:#x})", status)
        return value

    def _text(self, handle: int, attr: int) -> str:
        buf = self._info(handle, attr, lambda: ctypes.create_string_buffer(64), optional=True)
        return buf.value.decode(errors="replace") if buf is not None else ""

    def _int(self, handle: int, attr: int, ctype: Any = ctypes.c_uint32,
             default: int | None = None) -> int:
        v = self._info(handle, attr, ctype, optional=default is not None)
        return int(v.value) if v is not None else int(default)  # type: ignore[arg-type]

    def _props(self, h: int) -> AgentProps:
        dtype = self._int(h, _ffi.HSA_AGENT_INFO_DEVICE)
        gpu = dtype == _ffi.HSA_DEVICE_TYPE_GPU
        return AgentProps(
            handle=h,
            device_type=dtype,
            name=self._text(h, _ffi.HSA_AGENT_INFO_NAME),
            product_name=self._text(h, _ffi.HSA_AMD_AGENT_INFO_PRODUCT_NAME),
            compute_units=self._int(h, _ffi.HSA_AMD_AGENT_INFO_COMPUTE_UNIT_COUNT, default=0),
            wavefront_size=self._int(h, _ffi.HSA_AGENT_INFO_WAVEFRONT_SIZE, default=0),
            # runtimes before ROCm 6 do not know NUM_XCC: one XCC is what they drive
            xcc_count=self._int(h, _ffi.HSA_AMD_AGENT_INFO_NUM_XCC, default=1) or 1,
            shader_engines=self._int(h, _ffi.HSA_AMD_AGENT_INFO_NUM_SHADER_ENGINES, default=0),
            shader_arrays_per_se=self._int(
                h, _ffi.HSA_AMD_AGENT_INFO_NUM_SHADER_ARRAYS_PER_SE, default=0),
            queue_min_size=self._int(h, _ffi.HSA_AGENT_INFO_QUEUE_MIN_SIZE, default=0),
            queue_max_size=self._int(h, _ffi.HSA_AGENT_INFO_QUEUE_MAX_SIZE, default=0),
            workgroup_max_size=self._int(h, _ffi.HSA_AGENT_INFO_WORKGROUP_MAX_SIZE,
                                         default=1024 if gpu else 0),
            node=self._int(h, _ffi.HSA_AGENT_INFO_NODE, default=0),
            driver_node_id=self._int(h, _ffi.HSA_AMD_AGENT_INFO_DRIVER_NODE_ID, default=0),
            pci_domain=self._int(h, _ffi.HSA_AMD_AGENT_INFO_DOMAIN, default=0),
            bdfid=self._int(h, _ffi.HSA_AMD_AGENT_INFO_BDFID, default=0),
        )
