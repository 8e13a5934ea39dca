"""A stand-in for libhsa-runtime64 that the backend can drive offline: agents, pools (host
memory), queues backed by SimRing rings and SimCommandProcessor consumers, signals, code
objects, async handlers and profiling timestamps. Kernels "run" through Python models keyed
by name that read their arguments from the kernarg segment at the C ABI offsets.

The fake advances the command processors only when the code under test waits on a signal
(or the test calls ``run``), so tests are deterministic. It records what was called.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable

from reef_rocm.rocm.hsa import _ffi
from tests.rocm.sim_ring import SimCommandProcessor, SimRing, SimSignals

GPU, CPU = 0x100, 0x200
POOL_DEVICE, POOL_KERNARG, POOL_FINE = 0x300, 0x301, 0x302


def _out(arg):  # the object behind ctypes.byref(...)
    return arg._obj


class FakeHsa:
    path = "fake-libhsa"
    check = _ffi.Library.check

    def __init__(self, kernels: dict[str, Callable[[int], None]] | None = None,
                 symbols: dict[str, dict[str, int]] | None = None, xcc: int = 8,
                 cus: int = 304) -> None:
        self.signals = SimSignals()
        self.queues: dict[int, tuple[SimRing, SimCommandProcessor, ctypes.Structure]] = {}
        self.allocs: dict[int, ctypes.Array] = {}
        self.calls: list[tuple] = []
        self.handlers: list[tuple[int, int, int, Callable, int]] = []
        self.kernels = kernels or {}  # name -> model(kernarg address)
        self.symbols = symbols or {}  # name -> {kernarg_size, group, private}
        self.kernel_names: dict[int, str] = {}
        self.times: dict[int, tuple[int, int]] = {}
        self.clock = 1000
        self.xcc, self.cus = xcc, cus
        self.initialised = 0
        self.readers = self.executables = 0

    # --- runtime ----------------------------------------------------------------------
    def hsa_init(self):
        self.initialised += 1
        return 0

    def hsa_shut_down(self):
        self.initialised -= 1
        return 0

    def hsa_status_string(self, status, out):
        out._obj.value = b"HSA_STATUS_FAKE"
        return 0

    def status_text(self, status):
        return f"fake status {status:#x}"

    def hsa_system_get_info(self, attr, out):
        v = _out(out)
        v.value = {_ffi.HSA_SYSTEM_INFO_VERSION_MAJOR: 1, _ffi.HSA_SYSTEM_INFO_VERSION_MINOR: 1,
                   _ffi.HSA_SYSTEM_INFO_TIMESTAMP_FREQUENCY: 1_000_000}[attr]
        return 0

    def hsa_iterate_agents(self, cb, data):
        for h in (CPU, GPU):
            cb(_ffi.Handle(h), None)
        return 0

    def hsa_agent_get_info(self, agent, attr, out):
        gpu = agent.handle == GPU
        v = _out(out)
        table = {
            _ffi.HSA_AGENT_INFO_DEVICE: _ffi.HSA_DEVICE_TYPE_GPU if gpu else
            _ffi.HSA_DEVICE_TYPE_CPU,
            _ffi.HSA_AGENT_INFO_NAME: b"gfx942" if gpu else b"Fake CPU",
            _ffi.HSA_AMD_AGENT_INFO_PRODUCT_NAME: b"Fake MI300X" if gpu else b"cpu",
        }
        if gpu:
            table.update({
                _ffi.HSA_AMD_AGENT_INFO_COMPUTE_UNIT_COUNT: self.cus,
                _ffi.HSA_AGENT_INFO_WAVEFRONT_SIZE: 64,
                _ffi.HSA_AMD_AGENT_INFO_NUM_XCC: self.xcc,
                _ffi.HSA_AMD_AGENT_INFO_NUM_SHADER_ENGINES: 32,
                _ffi.HSA_AMD_AGENT_INFO_NUM_SHADER_ARRAYS_PER_SE: 1,
                _ffi.HSA_AGENT_INFO_QUEUE_MIN_SIZE: 64,
                _ffi.HSA_AGENT_INFO_QUEUE_MAX_SIZE: 1 << 17,
                _ffi.HSA_AGENT_INFO_WORKGROUP_MAX_SIZE: 1024,
                _ffi.HSA_AMD_AGENT_INFO_DRIVER_NODE_ID: 1,
            })
        if attr not in table:
            return _ffi.HSA_STATUS_ERROR_INVALID_ARGUMENT
        v.value = table[attr]
        return 0

    # --- memory -----------------------------------------------------------------------------
    def hsa_amd_agent_iterate_memory_pools(self, agent, cb, data):
        for p in ((POOL_DEVICE,) if agent.handle == GPU else (POOL_KERNARG, POOL_FINE)):
            cb(_ffi.Handle(p), None)
        return 0

    def hsa_amd_memory_pool_get_info(self, pool, attr, out):
        flags = {POOL_DEVICE: _ffi.HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_COARSE_GRAINED,
                 POOL_KERNARG: _ffi.HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_KERNARG_INIT
                 | _ffi.HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED,
                 POOL_FINE: _ffi.HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED}[pool.handle]
        _out(out).value = {
            _ffi.HSA_AMD_MEMORY_POOL_INFO_SEGMENT: _ffi.HSA_AMD_SEGMENT_GLOBAL,
            _ffi.HSA_AMD_MEMORY_POOL_INFO_GLOBAL_FLAGS: flags,
            _ffi.HSA_AMD_MEMORY_POOL_INFO_SIZE: 192 << 30,
            _ffi.HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_ALLOWED: True,
            _ffi.HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_GRANULE: 4096,
        }[attr]
        return 0

    def hsa_amd_memory_pool_allocate(self, pool, size, flags, out):
        buf = (ctypes.c_uint8 * (size + 64))()
        addr = (ctypes.addressof(buf) + 63) // 64 * 64
        self.allocs[addr] = buf
        self.calls.append(("alloc", pool.handle, size))
        _out(out).value = addr
        return 0

    def hsa_amd_memory_pool_free(self, ptr):
        del self.allocs[ptr.value]
        return 0

    def hsa_amd_agents_allow_access(self, n, agents, flags, ptr):
        self.calls.append(("allow", tuple(agents[i].handle for i in range(n))))
        return 0

    def hsa_memory_copy(self, dst, src, n):
        ctypes.memmove(dst.value, src.value, n)
        self.calls.append(("copy", n))
        return 0

    # --- queues -----------------------------------------------------------------------------
    def hsa_queue_create(self, agent, size, qtype, cb, data, priv, group, out):
        ring = SimRing(size)
        cp = SimCommandProcessor(ring, self.signals)
        q = _ffi.Queue(type=qtype, base_address=ring.ring_base, size=size, id=len(self.queues))
        q.doorbell_signal.handle = self.signals.create(0)
        self.queues[ctypes.addressof(q)] = (ring, cp, q)
        _out(out).contents = q
        self.calls.append(("queue_create", size, qtype))
        return 0

    def _q(self, qp):
        return self.queues[ctypes.addressof(qp.contents)]

    def hsa_queue_destroy(self, qp):
        del self.queues[ctypes.addressof(qp.contents)]
        return 0

    def hsa_queue_load_read_index_scacquire(self, qp):
        return self._q(qp)[0].read

    def hsa_queue_load_write_index_relaxed(self, qp):
        return self._q(qp)[0].write

    def hsa_queue_store_write_index_screlease(self, qp, v):
        self._q(qp)[0].write = v

    def hsa_amd_queue_cu_set_mask(self, qp, count, arr):
        self.calls.append(("cu_mask", count, tuple(arr[i] for i in range(count // 32))))
        return 0

    def hsa_amd_queue_set_priority(self, qp, prio):
        self.calls.append(("priority", prio))
        return 0

    def hsa_amd_profiling_set_profiler_enabled(self, qp, on):
        self.calls.append(("profiling", on))
        return 0

    # --- signals ----------------------------------------------------------------------------
    def hsa_signal_create(self, initial, n, consumers, out):
        _out(out).handle = self.signals.create(initial)
        return 0

    def hsa_signal_destroy(self, sig):
        del self.signals.values[sig.handle]
        return 0

    def hsa_signal_load_scacquire(self, sig):
        return self.signals.values[sig.handle]

    def _store(self, sig, v):
        for ring, _, q in self.queues.values():
            if q.doorbell_signal.handle == sig.handle:
                ring.ring_doorbell(v)
        self.signals.values[sig.handle] = v

    hsa_signal_store_relaxed = _store
    hsa_signal_store_screlease = _store

    def hsa_signal_wait_scacquire(self, sig, cond, value, timeout, state):
        assert cond == _ffi.HSA_SIGNAL_CONDITION_LT
        for _ in range(10_000):
            if self.signals.values[sig.handle] < value:
                return self.signals.values[sig.handle]
            if not self.run():
                break
        raise AssertionError(f"wait on signal {sig.handle:#x} can never finish (deadlock)")

    def hsa_amd_signal_async_handler(self, sig, cond, value, cb, arg):
        self.handlers.append((sig.handle, cond, value, cb, arg))
        self._fire()
        return 0

    def _fire(self):
        keep = []
        for h in self.handlers:
            sig, cond, value, cb, arg = h
            v = self.signals.values.get(sig)
            if v is not None and v < value:
                if cb(v, arg):
                    keep.append(h)
            else:
                keep.append(h)
        self.handlers = keep

    def hsa_amd_profiling_get_dispatch_time(self, agent, sig, out):
        t = _out(out)
        t.start, t.end = self.times[sig.handle]
        return 0

    # --- the command processors -------------------------------------------------------------
    def run(self, fetch_only: bool = False) -> bool:
        """Advance every queue: fetch, then finish each running packet (running its kernel
        model); timestamps per completion. Returns whether anything moved."""
        moved = False
        for _ring, cp, _ in list(self.queues.values()):
            while True:
                n = cp.fetch()
                moved |= n > 0
                for p in cp.seen[-n:] if n else []:
                    if p.type == 3 and p.signal:  # barrier done at fetch
                        self._stamp(p.signal)
                if fetch_only or not cp.running:
                    break
                i = min(cp.running)
                p = cp.running[i]
                name = self.kernel_names[p.kernel_object]
                self.kernels[name](p.kernarg)
                self._stamp(p.signal)
                cp.complete(i)
                moved = True
        self._fire()
        return moved

    def _stamp(self, sig):
        self.clock += 250
        self.times[sig] = (self.clock - 100, self.clock)

    # --- code objects -----------------------------------------------------------------------
    def hsa_code_object_reader_create_from_memory(self, buf, size, out):
        self.readers += 1
        _out(out).handle = 0x900 + self.readers
        return 0

    def hsa_code_object_reader_destroy(self, reader):
        self.readers -= 1
        return 0

    def hsa_executable_create_alt(self, profile, rounding, options, out):
        self.executables += 1
        _out(out).handle = 0xA00 + self.executables
        return 0

    def hsa_executable_load_agent_code_object(self, exe, agent, reader, options, out):
        assert agent.handle == GPU
        return 0

    def hsa_executable_freeze(self, exe, options):
        return 0

    def hsa_executable_destroy(self, exe):
        self.executables -= 1
        return 0

    def hsa_executable_get_symbol_by_name(self, exe, name, agent, out):
        n = name.decode()
        if not n.endswith(".kd") or n[:-3] not in self.symbols:
            return _ffi.HSA_STATUS_ERROR_INVALID_SYMBOL_NAME
        obj = 0x7000_0000 + 0x100 * (list(self.symbols).index(n[:-3]) + 1)
        self.kernel_names[obj] = n[:-3]
        _out(out).handle = obj
        return 0

    def hsa_executable_symbol_get_info(self, sym, attr, out):
        name = self.kernel_names[sym.handle]
        s = self.symbols[name]
        _out(out).value = {
            _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_OBJECT: sym.handle,
            _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_SIZE: s["kernarg"],
            _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_ALIGNMENT: 8,
            _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_GROUP_SEGMENT_SIZE: s.get("group", 0),
            _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_PRIVATE_SEGMENT_SIZE: s.get("private", 0),
            _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_DYNAMIC_CALLSTACK: False,
        }[attr]
        return 0


def axpb_model(kernarg: int) -> None:
    """hsa_axpb(float a, const float* x, float b, float* out, int n), C ABI offsets."""
    raw = ctypes.string_at(kernarg, 36)
    a, x, b, out, n = struct.unpack_from("<f4xQf4xQi", raw)
    xs = (ctypes.c_float * n).from_address(x)
    ys = (ctypes.c_float * n).from_address(out)
    for i in range(n):
        ys[i] = a * xs[i] + b
