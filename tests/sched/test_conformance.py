"""Conformance: the preemption behaviours the scheduler relies on, run the same way against
the sim and against the cuda backend (GPU host), so the model cannot drift from hardware.

Behaviours: a flag written in stream order before a kernel evicts every block at block start;
completion slots count exactly the blocks that ran to the end (also when the flag lands
mid-kernel); memsets and copies are ordered with kernels in their stream; a write-value on a
side stream orders kernels on another stream through an event (the scheduler's gate); a slot
read queued behind evicted kernels sees their final counts; the timestamp kernel works.
The kernel is ``be_spin`` of hip_kernels/reef_test_kernels.cu (nvcc builds it; the sim runs a
kernel model with the same signature and the same observable effect).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from reef_rocm.gpu import DevicePtr, LaunchConfig, open_device, probe
from reef_rocm.sched.clock import clock_for
from reef_rocm.sched.devclock import DeviceStamps

SOURCE = Path(__file__).resolve().parents[2] / "hip_kernels" / "reef_test_kernels.cu"
NAN = 0x7FC00000
THREADS = 128


class Kit:
    """A backend's device, its be_spin kernel, and how to let device time pass."""

    def __init__(self, dev, kernel, short_spin, long_spin, blocks_long, let_run) -> None:
        self.dev, self.kernel = dev, kernel
        self.short_spin, self.long_spin, self.blocks_long = short_spin, long_spin, blocks_long
        self.let_run = let_run


def _sim_kit() -> Kit:
    from reef_rocm.gpu.sim import SimKernelSpec

    def write_block(ctx) -> None:
        out = int(ctx.arg("out"))
        t = ctx.block[0]
        ctx.memory.write(out + 4 * t * ctx.block_id, np.ones(t, np.float32).view(np.uint8))

    dev = open_device("sim", arch="sm_90", compute_units=8)
    spec = SimKernelSpec(
        "be_spin", block_time_us=100.0, blocks_per_cu=1, on_block=write_block,
        params=["flag:ptr:preempt_flag", "slot:ptr:completion_slot", "out:ptr", "spin:i32"],
    )  # fmt: skip
    k = dev.load_module(spec).get_kernel("be_spin")
    return Kit(dev, k, 10, 1000, 64, lambda: dev.advance(250.0))


def _cuda_kit(tmp: Path) -> Kit:
    report = probe("cuda")
    if not report.available:
        pytest.skip(f"no CUDA GPU: {report.reason}")
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not Path(nvcc).exists():
        pytest.skip("nvcc not found")
    dev = open_device("cuda")
    out = tmp / "k.cubin"
    subprocess.run([nvcc, "-cubin", f"-arch={dev.info.arch}", "-o", str(out), str(SOURCE)],
                   check=True)  # fmt: skip
    k = dev.load_module(out.read_bytes()).get_kernel("be_spin")
    # ~8 waves of ~1 ms blocks, so a flag raised 2 ms in lands while the kernel runs
    blocks = dev.info.compute_units * 8 * 8
    return Kit(dev, k, 1000, 400_000, blocks, lambda: time.sleep(0.002))


@pytest.fixture(params=["sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def kit(request, tmp_path):
    k = _sim_kit() if request.param == "sim" else _cuda_kit(tmp_path)
    yield k
    k.dev.synchronize()
    k.dev.close()


def _bufs(kit: Kit, blocks: int):
    dev = kit.dev
    flag, slot, out = dev.alloc(4), dev.alloc(4), dev.alloc(4 * blocks * THREADS)
    dev.memset32(flag, 0, 1)
    dev.memset32(slot, 0, 1)
    dev.memset32(out, NAN, blocks * THREADS)
    return flag, slot, out


def _u32(dev, buf) -> int:
    a = np.zeros(1, np.uint32)
    dev.copy_to_host(a, buf)
    return int(a[0])


def _written_blocks(dev, out, blocks: int) -> int:
    res = np.empty((blocks, THREADS), np.float32)
    dev.copy_to_host(res, out)
    return int((~np.isnan(res)).all(axis=1).sum())


def _bind(kit: Kit, blocks: int, spin: int, flag, slot, out):
    return kit.kernel.bind(LaunchConfig(blocks, THREADS), [flag, slot, out, np.int32(spin)])


def test_flag_in_stream_order_evicts_at_block_start(kit):
    dev, blocks = kit.dev, 32
    flag, slot, out = _bufs(kit, blocks)
    s = dev.create_stream()
    s.write_value32(flag, 1)
    _bind(kit, blocks, kit.short_spin, flag, slot, out).launch(s)
    s.synchronize()
    assert _u32(dev, slot) == 0 and _written_blocks(dev, out, blocks) == 0


def test_slot_counts_every_block_once(kit):
    dev, blocks = kit.dev, 40
    flag, slot, out = _bufs(kit, blocks)
    s = dev.create_stream()
    _bind(kit, blocks, kit.short_spin, flag, slot, out).launch(s)
    s.synchronize()
    assert _u32(dev, slot) == blocks and _written_blocks(dev, out, blocks) == blocks


def test_memset_and_copies_are_ordered_with_kernels(kit):
    """kernel; copy(a); memset(slot); kernel; copy(b); memset; copy(c) on one stream."""
    dev, blocks = kit.dev, 24
    flag, slot, out = _bufs(kit, blocks)
    s = dev.create_stream()
    k = _bind(kit, blocks, kit.short_spin, flag, slot, out)
    a, b, c = (np.full(1, 7, np.uint32) for _ in range(3))
    k.launch(s)
    dev.copy_to_host(a, slot, s)
    dev.memset32(slot, 0, 1, s)
    k.launch(s)
    dev.copy_to_host(b, slot, s)
    dev.memset32(DevicePtr(slot.ptr), 0, 1, s)
    dev.copy_to_host(c, slot, s)
    s.synchronize()
    assert (int(a[0]), int(b[0]), int(c[0])) == (blocks, blocks, 0)


def test_side_stream_write_orders_other_stream_through_event(kit):
    """The scheduler's gate: flag write + event on a side stream; the BE stream waits on the
    event before its kernel, which therefore sees the value written."""
    dev, blocks = kit.dev, 16
    flag, slot, out = _bufs(kit, blocks)
    least, most = dev.stream_priority_range()
    side, be = dev.create_stream(priority=most), dev.create_stream(priority=least)
    ev = dev.create_event(timing=False)
    k = _bind(kit, blocks, kit.short_spin, flag, slot, out)
    side.write_value32(flag, 1)
    ev.record(side)
    be.wait_event(ev)
    k.launch(be)
    be.synchronize()
    assert _u32(dev, slot) == 0
    side.write_value32(flag, 0)
    ev.record(side)
    be.wait_event(ev)
    dev.memset32(slot, 0, 1, be)
    k.launch(be)
    be.synchronize()
    assert _u32(dev, slot) == blocks and _written_blocks(dev, out, blocks) == blocks


def test_flag_mid_kernel_counts_exactly_and_drain_read_is_final(kit):
    """Raise the flag from a side stream while a long kernel runs: blocks that ran count,
    blocks that started after the flag leave; a slot copy queued on the BE stream after the
    raise (the scheduler's drain marker) lands after the kernel and holds the final count."""
    dev, blocks = kit.dev, kit.blocks_long
    flag, slot, out = _bufs(kit, blocks)
    least, most = dev.stream_priority_range()
    side, be = dev.create_stream(priority=most), dev.create_stream(priority=least)
    _bind(kit, blocks, kit.long_spin, flag, slot, out).launch(be)
    kit.let_run()
    side.write_value32(flag, 1)
    marker = np.full(1, 0xFFFFFFFF, np.uint32)
    dev.copy_to_host(marker, slot, be)
    ev = dev.create_event(timing=False)
    ev.record(be)
    ev.synchronize()
    side.synchronize()
    final = _u32(dev, slot)
    assert 0 < final < blocks
    assert int(marker[0]) == final == _written_blocks(dev, out, blocks)


def test_timestamp_kernel_and_calibration(kit):
    dev = kit.dev
    clock = clock_for(dev)
    st = DeviceStamps(dev, clock, slots=4)
    try:
        assert st.available, st.reason
        s = dev.create_stream()
        cal = st.calibrate(s, samples=8)
        t0 = clock.now_us()
        st.stamp(1, s)
        st.read_async(1, s)
        s.synchronize()
        t1 = clock.now_us()
        t = st.host_us(1)
        slack = cal.uncertainty_ns / 1000 + 1.0
        assert t is not None and t0 - slack <= t <= t1 + slack
    finally:
        st.close()
