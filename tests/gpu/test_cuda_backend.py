"""The cuda backend on a real NVIDIA GPU: load a cubin built from hip_kernels/ by nvcc, launch,
check results, write-value, priorities, events, host-mapped memory, occupancy."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from reef_rocm.gpu import DevicePtr, LaunchConfig, PreemptLevel, open_device, probe

pytestmark = pytest.mark.gpu

SOURCE = Path(__file__).resolve().parents[2] / "hip_kernels" / "reef_test_kernels.cu"


@pytest.fixture(scope="module")
def dev():
    report = probe("cuda")
    if not report.available:
        pytest.skip(f"no CUDA GPU: {report.reason}")
    d = open_device("cuda")
    yield d
    d.close()


@pytest.fixture(scope="module")
def module(dev, tmp_path_factory):
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not Path(nvcc).exists():
        pytest.skip("nvcc not found")
    out = tmp_path_factory.mktemp("cubin") / "k.cubin"
    subprocess.run(
        [nvcc, "-cubin", f"-arch={dev.info.arch}", "-o", str(out), str(SOURCE)], check=True
    )
    return dev.load_module(out.read_bytes())


def test_device_info(dev):
    info = dev.info
    assert info.backend == "cuda" and info.arch.startswith("sm_")
    assert info.compute_units > 0 and info.memory_bytes > 1 << 30 and info.warp_size == 32
    assert dev.capabilities.level == PreemptLevel.DEVICE_QUEUE


def test_vector_add(dev, module):
    n = 100_003
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    da, db, dc = dev.alloc(a.nbytes), dev.alloc(b.nbytes), dev.alloc(a.nbytes)
    dev.copy_to_device(da, a)
    dev.copy_to_device(db, b)
    dev.memset32(dc, 0x7FC00000, n)  # poison with NaN: every element must be written
    s = dev.create_stream()
    launch = module.get_kernel("vector_add").bind(
        LaunchConfig((n + 255) // 256, 256), (da, db, dc, np.int32(n))
    )
    launch.launch(s)
    launch.launch(s)  # a bound launch is reusable
    s.synchronize()
    c = np.empty_like(a)
    dev.copy_to_host(c, dc)
    np.testing.assert_array_equal(c, a + b)


def test_argument_packing_all_widths(dev, module):
    out = dev.alloc(6 * 8)
    args = (
        out,
        np.int8(-3),
        np.int16(-300),
        np.int32(-70000),
        np.int64(-(2**40)),
        np.float32(1.5),
        np.float64(-2.25),
    )
    s = dev.create_stream()
    module.get_kernel("echo_args").launch(s, LaunchConfig(1, 32), *args)
    s.synchronize()
    got = np.empty(6, dtype=np.uint64)
    dev.copy_to_host(got, out)
    signed = got.view(np.int64)
    assert list(signed[:4]) == [-3, -300, -70000, -(2**40)]
    assert np.uint32(got[4]).view(np.float32) == np.float32(1.5)
    assert got[5:6].view(np.float64)[0] == -2.25


def test_write_value_flag_evicts_queued_kernels(dev, module):
    """The REEF device-queue mechanism: kernels queued after the flag write skip all blocks."""
    blocks, threads = 264, 128
    flag, slot = dev.alloc(4), dev.alloc(4)
    out = dev.alloc(blocks * threads * 4)
    dev.memset32(flag, 0, 1)
    dev.memset32(slot, 0, 1)
    be = module.get_kernel("be_spin").bind(
        LaunchConfig(blocks, threads), (flag, slot, out, np.int32(1000))
    )
    s = dev.create_stream()
    be.launch(s)
    s.synchronize()
    done = np.zeros(1, dtype=np.uint32)
    dev.copy_to_host(done, slot)
    assert done[0] == blocks  # flag clear: every block counted exactly once

    dev.memset32(slot, 0, 1)
    dev.memset32(out, 0x7FC00000, blocks * threads)
    s.write_value32(flag, 1)
    be.launch(s)  # queued behind the write in the same stream: must see the flag
    s.synchronize()
    dev.copy_to_host(done, slot)
    assert done[0] == 0
    res = np.empty(blocks * threads, dtype=np.float32)
    dev.copy_to_host(res, out)
    assert np.isnan(res).all()  # nothing was written
    s.write_value32(DevicePtr(flag.ptr), 0)
    s.synchronize()
    val = np.empty(1, dtype=np.int32)
    dev.copy_to_host(val, flag)
    assert val[0] == 0


def test_flag_raised_mid_kernel_counts_exactly(dev, module):
    """Raise the flag from a side stream while a long BE kernel runs: blocks that ran count,
    blocks that started after the flag skip; slot == number of outputs written."""
    # ~8 waves of blocks that each spin ~1 ms, so the flag lands while the kernel runs
    blocks, threads = dev.info.compute_units * 16 * 8, 128
    flag, slot = dev.alloc(4), dev.alloc(4)
    out = dev.alloc(blocks * threads * 4)
    dev.memset32(flag, 0, 1)
    dev.memset32(slot, 0, 1)
    dev.memset32(out, 0x7FC00000, blocks * threads)
    be_stream, side = dev.create_stream(), dev.create_stream()
    module.get_kernel("be_spin").launch(
        be_stream, LaunchConfig(blocks, threads), flag, slot, out, np.int32(400000)
    )
    time.sleep(0.002)
    side.write_value32(flag, 1)
    be_stream.synchronize()
    side.synchronize()
    done = np.zeros(1, dtype=np.uint32)
    dev.copy_to_host(done, slot)
    res = np.empty((blocks, threads), dtype=np.float32)
    dev.copy_to_host(res, out)
    written_blocks = int((~np.isnan(res)).all(axis=1).sum())
    assert 0 < done[0] < blocks
    assert done[0] == written_blocks


def test_host_mapped_flag_visible_to_kernel(dev, module):
    flag = dev.alloc_host_mapped(4)
    flag.host.view(np.int32)[0] = 1
    slot = dev.alloc(4)
    dev.memset32(slot, 0, 1)
    out = dev.alloc(4 * 128)
    s = dev.create_stream()
    module.get_kernel("be_spin").launch(s, LaunchConfig(4, 128), flag, slot, out, np.int32(10))
    s.synchronize()
    done = np.zeros(1, dtype=np.uint32)
    dev.copy_to_host(done, slot)
    assert done[0] == 0
    flag.close()


def test_stream_priorities_and_events(dev, module):
    least, greatest = dev.stream_priority_range()
    assert greatest < least  # CUDA: lower number = more urgent
    hi, lo = dev.create_stream(priority=greatest), dev.create_stream(priority=least)
    assert (hi.priority, lo.priority) == (greatest, least)
    # Fill the GPU from the low-priority stream, then queue a high-priority kernel and a
    # second low one: once SMs free up, the urgent kernel's blocks are dispatched first.
    counter, order = dev.alloc(4), dev.alloc(4 * 3 * 4096)
    dev.memset32(counter, 0, 1)
    k = module.get_kernel("record_order")
    n = 4096
    o1, o2, o3 = order.offset(0), order.offset(4 * n), order.offset(8 * n)
    start, end = dev.create_event(), dev.create_event()
    start.record(lo)
    k.launch(lo, LaunchConfig(n, 256), counter, o1, np.int32(200000))
    k.launch(lo, LaunchConfig(n, 256), counter, o2, np.int32(2000))
    k.launch(hi, LaunchConfig(n, 256), counter, o3, np.int32(2000))
    end.record(lo)
    dev.synchronize()
    assert end.query()
    assert start.elapsed_ms(end) > 0
    got = np.empty((3, n), dtype=np.uint32)
    dev.copy_to_host(got, order)
    # The urgent kernel's blocks, on average, start before the second low-priority kernel's.
    assert np.median(got[2]) < np.median(got[1])


def test_occupancy_and_attributes(dev, module):
    k = module.get_kernel("vector_add")
    attrs = k.attributes
    assert attrs["registers"] > 0 and attrs["max_threads_per_block"] >= 256
    assert k.max_active_blocks_per_cu(256) >= 1
    assert k.max_active_blocks_per_cu(1024) <= k.max_active_blocks_per_cu(128)


def test_missing_kernel_is_a_clear_error(dev, module):
    from reef_rocm.errors import GpuError

    with pytest.raises(GpuError, match="no_such_kernel"):
        module.get_kernel("no_such_kernel")


def test_stream_memset_is_ordered_after_the_kernel_before_it(dev, module):
    """memset32(stream=) runs in stream order on a non-blocking stream: a slot reset queued
    behind a kernel that counts into the slot must land after that kernel's count."""
    blocks, threads = 132, 128
    flag, slot = dev.alloc(4), dev.alloc(4)
    out = dev.alloc(blocks * threads * 4)
    dev.memset32(flag, 0, 1)
    dev.memset32(slot, 0, 1)
    be = module.get_kernel("be_spin").bind(
        LaunchConfig(blocks, threads), (flag, slot, out, np.int32(20000))
    )
    s = dev.create_stream()
    be.launch(s)
    dev.memset32(slot, 0, 1, stream=s)  # after the kernel's blocks counted
    s.synchronize()
    done = np.full(1, 99, dtype=np.uint32)
    dev.copy_to_host(done, slot, stream=s)
    s.synchronize()
    assert done[0] == 0
    for b in (flag, slot, out):
        b.close()


def test_close_and_context_managers_on_every_resource(dev, module):
    with dev.alloc(64) as buf:
        dev.memset32(buf, 7, 16)
    assert buf.ptr == 0
    buf.close()  # idempotent
    with dev.alloc_host_mapped(64) as hm:
        hm.host[:] = 1
    assert hm.ptr == 0
    with dev.create_stream() as s, dev.create_event() as ev:
        ev.record(s)
        ev.synchronize()
    assert s.handle is None and ev.handle is None
    s.close()
    ev.close()
    buf2 = dev.alloc(8)
    buf2.close()  # the old verb is an alias of close()
    buf2.close()
    from reef_rocm.gpu import open_device as reopen

    with reopen("cuda") as second:  # a second hold on the primary context, released on exit
        with second.load_module(module._image) as m:
            assert m.get_kernel("vector_add") is m.get_kernel("vector_add")
        assert m.handle is None


def test_bind_limit_is_the_device_attribute(dev, module):
    from reef_rocm.errors import UnsupportedError

    limit = dev.info.max_threads_per_block
    k = module.get_kernel("vector_add")
    k.bind(LaunchConfig(1, limit), (dev.alloc(4), dev.alloc(4), dev.alloc(4), np.int32(1)))
    with pytest.raises(UnsupportedError, match=f"device limit of {limit}"):
        k.bind(LaunchConfig(1, (limit, 2)), ())


def test_make_current_from_another_thread(dev, module):
    """A scheduler/server thread calls make_current() once, then launches and copies."""
    import threading

    n = 1024
    a = np.arange(n, dtype=np.float32)
    out = np.empty(n, dtype=np.float32)
    errors = []

    def worker():
        try:
            dev.make_current()
            da, dc = dev.alloc(a.nbytes), dev.alloc(a.nbytes)
            dev.copy_to_device(da, a)
            s = dev.create_stream()
            module.get_kernel("vector_add").launch(
                s, LaunchConfig(n // 256, 256), da, da, dc, np.int32(n)
            )
            dev.copy_to_host(out, dc, stream=s)
            s.synchronize()
            for r in (da, dc, s):
                r.close()
        except Exception as e:  # re-raised in the test thread
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert not errors, errors
    np.testing.assert_array_equal(out, a + a)
