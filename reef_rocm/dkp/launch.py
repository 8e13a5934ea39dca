"""The padded launch on a device: load a DKP build, split CUs, bind RT + BE kernels.

    with DkpRuntime(device, build) as rt:
        rt.set_split(n_rt, stream)                      # which CUs run RT work
        be_cursor = rt.cursor(be_instance)              # BE progress, one per BE inference
        pad = rt.bind(rt_inst, i, be_inst, j, be_cursor, proxy)
        pad.launch(stream)                              # one driver call, nothing allocated

Argument structs of the bodies are packed once at bind time and copied to device memory in
stream order; a launch is the dispatcher's BoundLaunch. BE progress lives on the device
(``BeCursor``: per BE kernel the next virtual block to hand out and the count of finished
ones), so consecutive padded launches continue a BE kernel without a host round trip; the
host learns progress by reading the cursor asynchronously (``read_async``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reef_rocm.dkp.build import DISPATCH_KERNEL, PROBE_KERNEL, DkpBuild, ProxyBuild
from reef_rocm.dkp.split import CuSplit, split_cus
from reef_rocm.errors import UnsupportedError
from reef_rocm.gpu.api import BoundLaunch, Device, DevicePtr, LaunchConfig, Stream
from reef_rocm.runtime.executor import ModelInstance

WORK_BYTES = 16  # struct reef_dkp_work
MAX_TABLE = 4096  # hardware ids the CU table can hold (AMD: 16 XCCs x 256)


def pack_args(build: DkpBuild, body_index: int, inst: ModelInstance) -> np.ndarray:
    """The argument struct of body ``body_index`` for instance ``inst``'s buffers (C ABI
    layout from ``reef_rocm.dkp.source.ArgLayout``)."""
    e = build.bodies[body_index]
    rec = inst.package.manifest.variant("dkp").kernels[e.kernel_index]
    by_name = dict(zip((p.name for p in e.body.params), rec.args, strict=True))
    out = np.zeros(e.body.layout.nbytes, np.uint8)
    for p, off in e.body.layout.fields:
        a = by_name[p.name]
        if a["kind"] == "buffer":
            val = np.array([inst.buffers[a["id"]].ptr], np.uint64)
        elif a["kind"] == "scalar":
            val = np.array([a["value"]], np.dtype(a["dtype"]))
        else:
            raise UnsupportedError(f"{rec.name}: argument {p.name} of kind {a['kind']!r} "
                                   "cannot be packed into a DKP body")  # fmt: skip
        raw = val.view(np.uint8)
        if raw.size != p.nbytes:
            raise UnsupportedError(f"{rec.name}: {p.name} is {raw.size} bytes, C type "
                                   f"{p.ctype} is {p.nbytes}")  # fmt: skip
        out[off : off + raw.size] = raw
    return out


class BeCursor:
    """BE progress of one BE inference on the device: per kernel ``next`` (virtual blocks
    handed out) and ``done`` (virtual blocks finished), uint32 each. Zero it with
    ``reset(stream)`` when the inference starts or restarts a kernel."""

    def __init__(self, device: Device, inst: ModelInstance) -> None:
        self.device = device
        self.instance = inst
        self.num_kernels = inst.num_kernels
        self._buf = device.alloc(8 * self.num_kernels)
        # pinned where the device has it: a copy into pageable memory would not be async
        self._pinned = None
        caps = getattr(device, "capabilities", None)
        if caps is not None and caps.host_mapped_memory:
            self._pinned = device.alloc_host_mapped(8 * self.num_kernels)
            self._host = self._pinned.host[: 8 * self.num_kernels].view(np.uint32)
        else:
            self._host = np.zeros(2 * self.num_kernels, np.uint32)
        self._event = device.create_event(timing=False)

    def next_ptr(self, k: int) -> DevicePtr:
        return self._buf.offset(8 * k)

    def done_ptr(self, k: int) -> DevicePtr:
        return self._buf.offset(8 * k + 4)

    def reset(self, stream: Stream, start: int = 0) -> None:
        if start < self.num_kernels:
            self.device.memset32(
                self._buf.offset(8 * start), 0, 2 * (self.num_kernels - start), stream
            )

    def read_async(self, stream: Stream) -> Any:
        self.device.copy_to_host(self._host, self._buf, stream)
        self._event.record(stream)
        return self._event

    def done(self, k: int) -> int:
        """Finished virtual blocks of kernel ``k`` as of the last completed ``read_async``."""
        self._event.synchronize()
        return int(self._host[2 * k + 1])

    def close(self) -> None:
        if self._buf is not None:
            self._event.close()
            self._buf.close()
            self._buf = None
            if self._pinned is not None:
                self._pinned.close()
                self._pinned = None

    def __enter__(self) -> BeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SlotCursor:
    """BE progress kept in the BE instance's own completion slots: ``done`` of kernel k *is*
    its slot k (the dispatcher counts one per finished virtual block, as the preemptible
    kernel counts one per block), so the scheduler's slot reads and exact restore see what
    padding ran; ``next`` words live in a buffer of their own. Zero kernel k's slot (the
    model's ``zero_slots``) and ``next`` (``reset``) in stream order before padding it:
    an evicted launch leaves a count that is not a prefix of its virtual blocks."""

    def __init__(self, device: Device, inst: ModelInstance) -> None:
        if inst.completion_slots is None:
            raise UnsupportedError(f"{inst.package.name}: variant {inst.variant.name!r} has no "
                                   "completion slots to count padded BE blocks in")  # fmt: skip
        self.device = device
        self.instance = inst
        self.num_kernels = inst.num_kernels
        self._next = device.alloc(4 * max(1, self.num_kernels))
        self._slots = inst.completion_slots

    def next_ptr(self, k: int) -> DevicePtr:
        return self._next.offset(4 * k)

    def done_ptr(self, k: int) -> DevicePtr:
        return self._slots.offset(4 * k)

    def reset(self, stream: Stream, start: int = 0) -> None:
        """Zero the ``next`` words of kernels ``start..`` (the slots are the model's)."""
        if start < self.num_kernels:
            self.device.memset32(self._next.offset(4 * start), 0, self.num_kernels - start,
                                 stream)  # fmt: skip

    def close(self) -> None:
        if self._next is not None:
            self._next.close()
            self._next = None

    def __enter__(self) -> SlotCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PaddedLaunch:
    """One RT kernel padded with one BE kernel, bound once (a BoundLaunch of the dispatcher)."""

    BE_LIMIT_ARG = 7  # dispatcher parameter be_count (reef_dkp_dispatch_kernel)
    TABLE_ARG = 12  # dispatcher parameter cu_side

    def __init__(self, bound: BoundLaunch, rt_count: int, be_count: int) -> None:
        self.bound = bound
        self.rt_count = rt_count
        self.be_count = be_count  # the BE kernel's virtual blocks in the bound range

    def set_be_limit(self, limit: int) -> None:
        """Hand out BE virtual blocks only while the cursor is below ``limit`` (in place, no
        re-pack): with the cursor at ``done`` blocks, ``done + n`` caps this launch at n."""
        if not 0 <= limit <= self.be_count:
            raise ValueError(f"BE limit {limit} outside 0..{self.be_count}")
        self.bound.params.set(self.BE_LIMIT_ARG, np.int32(limit))

    def set_table(self, table: Any) -> None:
        """Use another RT/BE CU table (``DkpRuntime.table_for``), in place."""
        self.bound.params.set(self.TABLE_ARG, DevicePtr(table.ptr))

    def launch(self, stream: Stream) -> None:
        self.bound.launch(stream)


class DkpRuntime:
    """A DKP build loaded on one device (every proxy class), its CU table and counters."""

    def __init__(self, device: Device, build: DkpBuild, hw_ids: list[int] | None = None) -> None:
        want = (
            "nvidia"
            if device.info.backend == "cuda"
            else "amd"
            if device.info.backend in ("hip", "hsa")
            else None
        )
        if want != build.vendor or (device.info.arch and device.info.arch != build.arch):
            raise UnsupportedError(f"DKP build for {build.vendor}:{build.arch}, device is "
                                   f"{device.info.backend}:{device.info.arch}")  # fmt: skip
        self.device = device
        self.build = build
        self.modules: dict[int, Any] = {}
        self._table: Any = None
        self._work: Any = None
        self._flag: Any = None
        self._argbufs: dict[tuple[int, int], Any] = {}  # (id(instance), kernel) -> device struct
        self._tables: dict[tuple[int, str], Any] = {}
        try:
            for p in build.proxies:
                self.modules[p.budget] = device.load_module(build.binary(p))
            self._table = device.alloc(MAX_TABLE)
            self._work = device.alloc(WORK_BYTES)
            self._flag = device.alloc(4)  # BE preempt flag when the caller gives none
            hk = device.create_stream()
            try:
                device.memset32(self._work, 0, WORK_BYTES // 4, hk)
                device.memset32(self._flag, 0, 1, hk)
                device.memset32(self._table, 0, MAX_TABLE // 4, hk)
                hk.synchronize()
            finally:
                hk.close()
        except BaseException:
            self.close()
            raise
        # without a probe: NVIDIA SM ids 0..SMs-1 (the device's count); AMD needs the probe
        self.hw_ids = list(hw_ids) if hw_ids is not None else (
            list(range(device.info.compute_units)) if build.vendor == "nvidia" else []
        )  # fmt: skip
        self.split: CuSplit | None = None

    @property
    def compute_units(self) -> int:
        return len(self.hw_ids) or self.device.info.compute_units

    def probe_hw_ids(self, stream: Stream, blocks: int | None = None) -> list[int]:
        """Launch the probe (many one-thread blocks) and keep the distinct ids it saw."""
        n = blocks or 64 * self.device.info.compute_units
        out = self.device.alloc(4 * n)
        try:
            mod = next(iter(self.modules.values()))
            mod.get_kernel(PROBE_KERNEL).launch(stream, LaunchConfig((n, 1, 1), (64, 1, 1)), out)
            host = np.zeros(n, np.uint32)
            self.device.copy_to_host(host, out, stream)
            stream.synchronize()
        finally:
            out.close()
        self.hw_ids = sorted(set(int(v) for v in host))
        return self.hw_ids

    def set_split(self, n_rt: int, stream: Stream, mode: str = "spread") -> CuSplit:
        """RT work on ``n_rt`` CUs (the rest BE); the table is written in ``stream`` order."""
        if not self.hw_ids:
            raise UnsupportedError("no hardware ids: call probe_hw_ids first (AMD)")
        s = split_cus(self.hw_ids, n_rt, self.build.vendor, mode)
        t = s.table
        if t.size > MAX_TABLE:
            raise UnsupportedError(f"hardware id {t.size - 1} beyond the CU table ({MAX_TABLE})")
        self._table_host = np.zeros(MAX_TABLE, np.uint8)
        self._table_host[: t.size] = t
        self.device.copy_to_device(self._table, self._table_host, stream)
        self.split = s
        return s

    def table_for(self, n_rt: int, stream: Stream, mode: str = "spread") -> Any:
        """A device CU table for ``n_rt`` RT CUs, made once per value (a padded launch picks
        one with ``PaddedLaunch.set_table``: no copy on the launch path)."""
        buf = self._tables.get((n_rt, mode))
        if buf is None:
            t = split_cus(self.hw_ids, n_rt, self.build.vendor, mode).table
            host = np.zeros(MAX_TABLE, np.uint8)
            host[: t.size] = t
            buf = self.device.alloc(MAX_TABLE)
            self._tables[(n_rt, mode)] = buf
            self.device.copy_to_device(buf, host, stream)
            stream.synchronize()
        return buf

    def cursor(self, inst: ModelInstance) -> BeCursor:
        return BeCursor(self.device, inst)

    def proxy(self, budget: int) -> ProxyBuild:
        for p in self.build.proxies:
            if p.budget == budget:
                return p
        raise KeyError(f"no proxy with budget {budget}")

    def blocks_for(self, proxy: ProxyBuild, threads: int, smem: int) -> int:
        """Persistent blocks of a padded launch: fill every CU at the proxy's occupancy (as the
        driver computes it)."""
        k = self.modules[proxy.budget].get_kernel(DISPATCH_KERNEL)
        per_cu = k.max_active_blocks_per_cu(threads, smem)
        if per_cu < 1:
            raise UnsupportedError(f"dispatcher (budget {proxy.budget}) does not fit {threads} "
                                   f"threads with {smem} B shared memory")  # fmt: skip
        return per_cu * self.device.info.compute_units

    def bind(
        self, rt: ModelInstance, rt_kernel: int, be: ModelInstance | None, be_kernel: int,
        cursor: BeCursor | SlotCursor | None, proxy: ProxyBuild, stream: Stream, *,
        be_begin: int = 0, be_count: int | None = None, preempt_flag: Any = None,
        grid_blocks: int | None = None,
    ) -> PaddedLaunch:  # fmt: skip
        """RT kernel ``rt_kernel`` of ``rt`` (every virtual block) padded with BE kernel
        ``be_kernel`` of ``be`` (virtual blocks ``[be_begin, be_begin + be_count)``, handed out
        from ``cursor``); ``be=None`` runs the RT kernel alone through the dispatcher."""
        b = self.build
        ri = b.body_index(rt.package.name, rt_kernel)
        rbody = b.bodies[ri].body
        rt_count = rt.package.manifest.variant("dkp").kernels[rt_kernel].dkp.virtual_blocks
        rbuf = self.args_buffer(rt, rt_kernel, stream)
        smem = rbody.smem_bytes
        if be is not None:
            if cursor is None:
                raise ValueError("a BE kernel needs its BeCursor")
            bi = b.body_index(be.package.name, be_kernel)
            bbody = b.bodies[bi].body
            if bbody.threads != rbody.threads:
                raise UnsupportedError(
                    f"{rbody.kernel} has {rbody.threads} threads per block, {bbody.kernel} "
                    f"{bbody.threads}: one launch has one block size"
                )
            n = be.package.manifest.variant("dkp").kernels[be_kernel].dkp.virtual_blocks
            count = n - be_begin if be_count is None else be_count
            if not (0 <= be_begin and 0 <= count and be_begin + count <= n):
                raise ValueError(f"BE virtual blocks [{be_begin}, +{count}) of {n}")
            bbuf = self.args_buffer(be, be_kernel, stream)
            smem = max(smem, bbody.smem_bytes)
            be_next, be_done = cursor.next_ptr(be_kernel), cursor.done_ptr(be_kernel)
        else:
            bi, bbuf, count = ri, rbuf, 0
            be_next = be_done = DevicePtr(self._work.ptr + 12)  # the pad word: never read
        if smem > self.device.info.max_shared_memory_per_block:
            limit = self.device.info.max_shared_memory_per_block
            raise UnsupportedError(f"padded launch needs {smem} B of shared memory, the device "
                                   f"allows {limit}")  # fmt: skip
        mod = self.modules[proxy.budget]
        grid = grid_blocks or self.blocks_for(proxy, rbody.threads, smem)
        flag = self._flag if preempt_flag is None else preempt_flag
        args = [
            np.int32(ri), DevicePtr(rbuf.ptr), np.int32(0), np.int32(rt_count),
            np.int32(bi), DevicePtr(bbuf.ptr), np.int32(be_begin), np.int32(count),
            be_next, be_done, DevicePtr(flag.ptr if hasattr(flag, "ptr") else int(flag)),
            DevicePtr(self._work.ptr), DevicePtr(self._table.ptr), np.int32(MAX_TABLE),
        ]  # fmt: skip
        cfg = LaunchConfig((grid, 1, 1), (rbody.threads, 1, 1), smem)
        bound = mod.get_kernel(DISPATCH_KERNEL).bind(cfg, args)
        return PaddedLaunch(bound, rt_count, count)

    def args_buffer(self, inst: ModelInstance, kernel: int, stream: Stream) -> Any:
        """The device copy of kernel ``kernel``'s argument struct for ``inst`` (packed and
        copied once, in ``stream`` order; kept until ``forget``/``close``)."""
        key = (id(inst), kernel)
        buf = self._argbufs.get(key)
        if buf is None:
            if self.build.sources:  # builds from package sources know what they compiled
                self.build.check_package(inst.package)
            host = pack_args(self.build, self.build.body_index(inst.package.name, kernel), inst)
            buf = self.device.alloc(host.nbytes)
            self._argbufs[key] = buf
            self.device.copy_to_device(buf, host, stream)
            stream.synchronize()  # the host struct goes out of scope
        return buf

    def forget(self, inst: ModelInstance) -> None:
        """Free the argument structs of ``inst`` (before closing it)."""
        for key in [k for k in self._argbufs if k[0] == id(inst)]:
            self._argbufs.pop(key).close()

    def reset_counters(self, stream: Stream) -> None:
        """Zero the per-launch counters: needed only after waves were killed mid-launch (the
        last block, which resets them, may not have run)."""
        self.device.memset32(self._work, 0, WORK_BYTES // 4, stream)

    def close(self) -> None:
        for buf in (
            *getattr(self, "_argbufs", {}).values(),
            *getattr(self, "_tables", {}).values(),
        ):
            buf.close()
        self._argbufs, self._tables = {}, {}
        for name in ("_table", "_work", "_flag"):
            buf = getattr(self, name, None)
            if buf is not None:
                buf.close()
                setattr(self, name, None)
        for m in self.modules.values():
            m.close()
        self.modules = {}

    def __enter__(self) -> DkpRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
