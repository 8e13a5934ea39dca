"""The host side of a padded launch against a recording device (no GPU): argument structs in
device memory, the dispatcher's launch arguments against its signature in the header, CU
tables, in-place edits, refusals."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import dkp_fixture as fixture
import numpy as np
import pytest

from reef_rocm.codeobj import KernelResources
from reef_rocm.dkp.build import (
    DISPATCH_HEADER,
    DISPATCH_KERNEL,
    HIP_KERNELS,
    BodyEntry,
    DkpBuild,
    ProxyBuild,
)  # fmt: skip
from reef_rocm.dkp.launch import MAX_TABLE, DkpRuntime, pack_args
from reef_rocm.dkp.source import package_bodies
from reef_rocm.errors import UnsupportedError
from reef_rocm.gpu.api import DevicePtr
from reef_rocm.runtime.executor import BufferView


@dataclass
class Buf:
    ptr: int
    nbytes: int
    mem: dict = field(repr=False, default_factory=dict)
    freed: bool = False

    def offset(self, n: int) -> DevicePtr:
        return DevicePtr(self.ptr + n)

    def close(self) -> None:
        self.freed = True


class Params:
    def __init__(self, args):
        self.args = list(args)

    def set(self, i, v):
        self.args[i] = v


class FakeDevice:
    """Records what DkpRuntime asks of a device; memory is real bytes."""

    def __init__(self, sms: int = 132) -> None:
        self.info = SimpleNamespace(backend="cuda", arch="sm_90", compute_units=sms,
                                    max_shared_memory_per_block=48 * 1024)  # fmt: skip
        self.mem: dict[int, bytearray] = {}
        self.bufs: list[Buf] = []
        self.binds: list = []
        self._next = 0x1000_0000

    def alloc(self, n):
        b = Buf(self._next, n)
        self.mem[b.ptr] = bytearray(n)
        self._next += (n + 0xFFF) // 0x1000 * 0x1000 + 0x1000
        self.bufs.append(b)
        return b

    def _at(self, dst):
        p = dst.ptr if hasattr(dst, "ptr") else int(dst)
        for base, m in self.mem.items():
            if base <= p < base + len(m):
                return m, p - base
        raise AssertionError(f"write to unallocated {p:#x}")

    def copy_to_device(self, dst, src, stream):
        m, off = self._at(dst)
        raw = np.ascontiguousarray(src).view(np.uint8).ravel()
        m[off : off + raw.size] = raw.tobytes()

    def memset32(self, dst, pattern, count, stream):
        m, off = self._at(dst)
        m[off : off + 4 * count] = np.full(count, pattern, np.uint32).tobytes()

    def create_stream(self, **kw):
        return SimpleNamespace(synchronize=lambda: None, close=lambda: None)

    def create_event(self, timing=True):
        return SimpleNamespace(record=lambda s: None, synchronize=lambda: None,
                               close=lambda: None)  # fmt: skip

    def load_module(self, image):
        dev = self

        class Kern:
            def max_active_blocks_per_cu(self, threads, smem):
                return 8

            def bind(self, cfg, args):
                b = SimpleNamespace(config=cfg, params=Params(args), launch=lambda s: None)
                dev.binds.append(b)
                return b

        return SimpleNamespace(get_kernel=lambda name: Kern(), close=lambda: None)

    def bytes_at(self, ptr, n):
        m, off = self._at(ptr)
        return bytes(m[off : off + n])


def _build(tmp_path: Path) -> DkpBuild:
    pb = package_bodies("reef_m0", fixture.SOURCE.read_text(), fixture.kernels())
    bodies = [BodyEntry("fx", k, b) for k, b in enumerate(pb.bodies)]
    res = KernelResources(DISPATCH_KERNEL, "nvidia", "sm_90", 32)
    (tmp_path / "r32.cubin").write_bytes(b"\x7fELF")
    return DkpBuild(tmp_path, "nvidia", "sm_90", "x.cu", bodies, [ProxyBuild(32, "r32.cubin", res)])


class FakeInstance:
    def __init__(self, dev: FakeDevice) -> None:
        kernels = fixture.kernels()
        self.package = SimpleNamespace(
            name="fx",
            manifest=SimpleNamespace(variant=lambda v: SimpleNamespace(kernels=kernels)),
        )
        self.buffers = [BufferView(dev.alloc(64 * 128 * 4).ptr, 64 * 128 * 4) for _ in range(3)]
        self.num_kernels = len(kernels)


def _signature() -> list[str]:
    """The dispatcher kernel's parameter types, from the header."""
    text = (HIP_KERNELS / DISPATCH_HEADER).read_text()
    m = re.search(r"reef_dkp_dispatch_kernel\(([^)]*)\)", text)
    return [" ".join(p.split()[:-1]) for p in m.group(1).split(",")]


def test_arg_structs_hold_the_instance_buffers(tmp_path):
    dev = FakeDevice()
    build = _build(tmp_path)
    inst = FakeInstance(dev)
    raw = pack_args(build, 0, inst)  # scale: (y = buffer 1, x = buffer 0)
    assert raw.view(np.uint64).tolist() == [inst.buffers[1].ptr, inst.buffers[0].ptr]
    raw = pack_args(build, 1, inst)  # blocksum: (out = buffer 2, x = buffer 0)
    assert raw.view(np.uint64).tolist() == [inst.buffers[2].ptr, inst.buffers[0].ptr]


def test_bind_matches_the_dispatcher_signature(tmp_path):
    dev = FakeDevice()
    build = _build(tmp_path)
    a, b = FakeInstance(dev), FakeInstance(dev)
    with DkpRuntime(dev, build) as rt:
        s = dev.create_stream()
        cur = rt.cursor(b)
        pad = rt.bind(a, 0, b, 1, cur, build.proxies[0], s, be_begin=4, be_count=20)
        bound = dev.binds[-1]
        sig = _signature()
        args = bound.params.args
        assert len(args) == len(sig) == 14
        for ctype, v in zip(sig, args, strict=True):
            if ctype.endswith("*"):
                assert isinstance(v, DevicePtr), ctype
            else:
                assert ctype == "int" and isinstance(v, np.int32), ctype
        rt_fn, rt_args, rt_begin, rt_count, be_fn, be_args, be_begin, be_count = args[:8]
        assert (int(rt_fn), int(rt_begin), int(rt_count)) == (0, 0, 64)
        assert (int(be_fn), int(be_begin), int(be_count)) == (1, 4, 20)
        # the structs in device memory are the packed ones
        assert dev.bytes_at(rt_args.ptr, 16) == pack_args(build, 0, a).tobytes()
        assert dev.bytes_at(be_args.ptr, 16) == pack_args(build, 1, b).tobytes()
        assert args[8].ptr == cur.next_ptr(1).ptr and args[9].ptr == cur.done_ptr(1).ptr
        assert int(args[13]) == MAX_TABLE
        # launch shape: persistent blocks (8 per SM from the driver) x SMs, 1-D, larger smem
        cfg = bound.config
        assert cfg.grid == (8 * 132, 1, 1) and cfg.block == (128, 1, 1)
        assert cfg.shared_mem == 528
        # in-place edits
        pad.set_be_limit(7)
        assert int(bound.params.args[7]) == 7
        with pytest.raises(ValueError):
            pad.set_be_limit(21)
        t = rt.table_for(10, s)
        pad.set_table(t)
        assert bound.params.args[12].ptr == t.ptr
        table = np.frombuffer(dev.bytes_at(t.ptr, MAX_TABLE), np.uint8)
        assert np.flatnonzero(table).tolist() == list(range(10))
        assert rt.table_for(10, s) is t  # one table per split
        # argument structs are packed once per (instance, kernel)
        n = len(dev.bufs)
        rt.bind(a, 0, b, 1, cur, build.proxies[0], s)
        assert len(dev.bufs) == n
        cur.close()


def test_bind_refusals(tmp_path):
    dev = FakeDevice()
    build = _build(tmp_path)
    a, b = FakeInstance(dev), FakeInstance(dev)
    with DkpRuntime(dev, build) as rt:
        s = dev.create_stream()
        cur = rt.cursor(b)
        with pytest.raises(ValueError, match="virtual blocks"):
            rt.bind(a, 0, b, 1, cur, build.proxies[0], s, be_begin=60, be_count=10)
        with pytest.raises(ValueError, match="BeCursor"):
            rt.bind(a, 0, b, 1, None, build.proxies[0], s)
        with pytest.raises(ValueError, match="outside"):
            rt.table_for(133, s)
    other = FakeDevice()
    other.info.arch = "sm_80"
    with pytest.raises(UnsupportedError, match="sm_90"):
        DkpRuntime(other, build)


def test_close_frees_everything(tmp_path):
    dev = FakeDevice()
    build = _build(tmp_path)
    a, b = FakeInstance(dev), FakeInstance(dev)
    before = len(dev.bufs)
    rt = DkpRuntime(dev, build)
    s = dev.create_stream()
    rt.bind(a, 0, b, 1, rt.cursor(b), build.proxies[0], s)
    rt.table_for(3, s)
    rt.close()
    mine = dev.bufs[before:]
    cursor_buf = [x for x in mine if x.nbytes == 8 * b.num_kernels]
    assert all(x.freed for x in mine if x not in cursor_buf)
