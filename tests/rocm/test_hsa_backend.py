"""The hsa device backend driven through a stand-in libhsa-runtime64 (tests/rocm/fake_hsa):
streams are simulated AQL queues, kernels run as Python models reading the kernarg
segments the backend wrote. Module tests need hipcc for a real HSACO (its metadata gives
the kernarg layout)."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from reef_rocm.errors import UnsupportedError
from reef_rocm.gpu import hsa as backend
from reef_rocm.gpu.api import LaunchConfig
from reef_rocm.rocm.hsa import aql
from reef_rocm.rocm.hsa.signals import DROPPED
from tests.rocm.fake_hsa import CPU, GPU, POOL_DEVICE, POOL_FINE, FakeHsa, axpb_model

SRC = Path(__file__).resolve().parents[2] / "hip_kernels" / "hsa_kernels.hip"


@pytest.fixture(scope="module")
def hsaco(tmp_path_factory) -> bytes:
    hipcc = shutil.which("hipcc")
    if not hipcc:
        pytest.skip("hipcc not installed (apt-get install hipcc): no HSACO for module tests")
    out = tmp_path_factory.mktemp("hsab") / "k.hsaco"
    r = subprocess.run(["nice", "-n", "10", hipcc, "--offload-arch=gfx90a", "--genco",
                        "--no-gpu-bundle-output", str(SRC), "-o", str(out)],
                       capture_output=True, text=True, env=dict(os.environ, HIP_PLATFORM="amd"),
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out.read_bytes()


@pytest.fixture
def fake():
    return FakeHsa(kernels={"hsa_axpb": axpb_model},
                   symbols={"hsa_axpb": {"kernarg": 296}, "hsa_spin": {"kernarg": 24},
                            "hsa_where": {"kernarg": 8}})


@pytest.fixture
def dev(fake):
    d = backend.HsaDevice(lib=fake, queue_size=64, slots=8)
    yield d
    d.close()


def test_device_info_from_agent_properties(dev, fake):
    i = dev.info
    assert (i.backend, i.name, i.arch, i.compute_units, i.warp_size) == (
        "hsa", "Fake MI300X", "gfx942", 304, 64)
    assert i.extra["xcc_count"] == 8 and i.memory_bytes == 192 << 30
    assert fake.initialised == 1
    caps = dev.capabilities
    assert caps.stream_write_value and caps.cu_mask and not caps.queue_reset  # no KFD patch


def test_close_releases_everything(fake):
    d = backend.HsaDevice(lib=fake, queue_size=64, slots=4)
    s = d.create_stream()
    b = d.alloc(256)
    h = d.alloc_host_mapped(64)
    e = d.create_event()
    assert fake.queues and fake.allocs
    for r in (e, h, b):
        r.close()
    d.close()
    assert not fake.queues and not fake.allocs and fake.initialised == 0
    assert s.queue.is_open is False


def test_memory_copies_and_host_mapped(dev, fake):
    b = dev.alloc(64)
    assert ("allow", (GPU,)) in fake.calls and ("alloc", POOL_DEVICE, 64) in fake.calls
    dev.copy_to_device(b, np.arange(16, dtype=np.int32))
    out = np.empty(16, dtype=np.int32)
    dev.copy_to_host(out, b)
    assert out.tolist() == list(range(16))
    dev.memset32(b, -1, 8)
    dev.copy_to_host(out, b)
    assert out.tolist() == [-1] * 8 + list(range(8, 16))
    h = dev.alloc_host_mapped(16)
    assert ("alloc", POOL_FINE, 16) in fake.calls and ("allow", (GPU, CPU)) in fake.calls
    h.host[:4] = [1, 2, 3, 4]
    assert ctypes.string_at(h.ptr, 4) == b"\1\2\3\4"


def test_stream_queue_options(dev, fake):
    s = dev.create_stream(priority=-1, cu_mask=[0, 8, 16, 33])
    assert s.cu_mask == (0, 8, 16, 33) and s.priority == -1
    assert ("priority", 2) in fake.calls  # HSA_AMD_QUEUE_PRIORITY_HIGH
    words = [c for c in fake.calls if c[0] == "cu_mask"][-1]
    assert words[1] == 320 and words[2][0] == (1 | 1 << 8 | 1 << 16) and words[2][1] == 2
    assert ("profiling", 1) in fake.calls
    with pytest.raises(ValueError, match="priority 5"):
        dev.create_stream(priority=5)
    with pytest.raises(ValueError, match="CU index 999"):
        dev.create_stream(cu_mask=[999])


def axpb_setup(dev, n=300):
    x = np.linspace(0, 1, n, dtype=np.float32)
    dx, dy = dev.alloc(4 * n), dev.alloc(4 * n)
    dev.copy_to_device(dx, x)
    return x, dx, dy


def test_launch_runs_kernel_with_packed_kernargs(dev, fake, hsaco):
    mod = dev.load_module(hsaco)
    k = mod.get_kernel("hsa_axpb")
    x, dx, dy = axpb_setup(dev)
    s = dev.create_stream()
    launch = k.bind(LaunchConfig(2, 256), [np.float32(3.0), dx, np.float32(0.5), dy,
                                           np.int32(x.size)])
    launch.launch(s)
    assert not s.query() and s.waiting() == 1
    ring, cp, _ = next(iter(fake.queues.values()))
    p = cp.parse(0)
    assert p.barrier and p.grid == (512, 1, 1) and p.workgroup == (256, 1, 1)
    assert p.kernel_object == k.symbol.kernel_object
    s.synchronize()
    assert s.query() and s.waiting() == 0
    got = np.empty_like(x)
    dev.copy_to_host(got, dy)
    np.testing.assert_allclose(got, 3.0 * x + 0.5, rtol=1e-6)
    # params edited between launches reach the next launch's own kernarg slot
    launch.params.set(0, np.float32(-1.0))
    launch.launch(s)
    s.synchronize()
    dev.copy_to_host(got, dy)
    np.testing.assert_allclose(got, -x + 0.5, rtol=1e-6)
    with pytest.raises(Exception, match="not found"):
        mod.get_kernel("nope")
    mod.close()
    assert fake.executables == 0 and fake.readers == 0


def test_slots_are_reused_only_after_completion(fake, hsaco):
    dev = backend.HsaDevice(lib=fake, queue_size=64, slots=2)
    k = dev.load_module(hsaco).get_kernel("hsa_axpb")
    x, dx, dy = axpb_setup(dev, 64)
    s = dev.create_stream()
    b = k.bind(LaunchConfig(1, 64), [np.float32(2.0), dx, np.float32(0.0), dy, np.int32(64)])
    for _ in range(5):  # the third launch must wait for the first slot: the fake runs the CP
        b.launch(s)
    s.synchronize()
    got = np.empty_like(x)
    dev.copy_to_host(got, dy)
    np.testing.assert_allclose(got, 2 * x)
    dev.close()


def test_write_value32_in_stream_order(dev, fake, hsaco):
    k = dev.load_module(hsaco).get_kernel("hsa_axpb")
    x, dx, dy = axpb_setup(dev, 8)
    flag = dev.alloc_host_mapped(4)
    s = dev.create_stream()
    s.write_value32(flag, 5)  # idle stream: stored now
    assert flag.host.view(np.int32)[0] == 5
    k.bind(LaunchConfig(1, 64), [np.float32(1), dx, np.float32(0), dy, np.int32(8)]).launch(s)
    s.write_value32(flag, 9)  # behind a kernel: lands when the barrier after it completes
    assert flag.host.view(np.int32)[0] == 5
    fake.run()
    assert flag.host.view(np.int32)[0] == 9
    dflag = dev.alloc(4)
    k.bind(LaunchConfig(1, 64), [np.float32(1), dx, np.float32(0), dy, np.int32(8)]).launch(s)
    s.write_value32(dflag, -2)  # device memory: written through hsa_memory_copy
    fake.run()
    out = np.empty(1, dtype=np.int32)
    dev.copy_to_host(out, dflag)
    assert out[0] == -2


def test_events_time_and_order(dev, fake, hsaco):
    k = dev.load_module(hsaco).get_kernel("hsa_axpb")
    x, dx, dy = axpb_setup(dev, 8)
    s1, s2 = dev.create_stream(), dev.create_stream()
    a, b = dev.create_event(), dev.create_event()
    a.record(s1)
    k.bind(LaunchConfig(1, 64), [np.float32(1), dx, np.float32(0), dy, np.int32(8)]).launch(s1)
    b.record(s1)
    s2.wait_event(b)
    assert not b.query()
    s2.synchronize()  # waits through s1's work (the fake runs every queue)
    assert b.query() and a.query()
    assert a.elapsed_ms(b) == pytest.approx(2 * 250 / 1_000_000 * 1e3)
    with pytest.raises(UnsupportedError, match="timing=True"):
        a.elapsed_ms(dev.create_event(timing=False))
    # the benchmark pattern: record, launch, record, synchronize the stream, read the time
    a.record(s1)
    k.bind(LaunchConfig(1, 64), [np.float32(1), dx, np.float32(0), dy, np.int32(8)]).launch(s1)
    b.record(s1)
    s1.synchronize()
    assert b.query() and a.elapsed_ms(b) > 0


def test_clear_queue_drops_waiting_kernels_per_contract(fake, hsaco):
    dev = backend.HsaDevice(lib=fake, queue_size=64, slots=16)
    k = dev.load_module(hsaco).get_kernel("hsa_axpb")
    x, dx, dy = axpb_setup(dev, 8)
    s = dev.create_stream()
    with pytest.raises(UnsupportedError, match="queue_reset"):
        dev.clear_queue(s)
    ring, cp, _ = next(iter(fake.queues.values()))
    resets = []

    def reset_queue(base):
        resets.append(base)
        return cp.driver_reset(base)

    dev.capabilities = dataclasses.replace(dev.capabilities, queue_reset=True)
    dev._kfd = SimpleNamespace(reset_queue=reset_queue, close=lambda: None)
    b = k.bind(LaunchConfig(1, 64), [np.float32(1), dx, np.float32(0), dy, np.int32(8)])
    for _ in range(5):
        b.launch(s)
    fake.run(fetch_only=True)  # the first one is running, four wait
    assert s.waiting() == 4
    dropped = dev.clear_queue(s)
    assert resets == [s.queue.ring_base] and dropped == 4
    rep = s.last_reset
    assert rep.read_index == 1 and [d.index for d in rep.dropped] == [1, 2, 3, 4]
    assert rep.dropped_tags == ["hsa_axpb"] * 4 and rep.in_flight == (0,)
    assert all(fake.signals.values[sg] == DROPPED for sg in rep.errored_signals)
    # the dropped slots are INVALID but the first, where the post-reset marker now sits
    assert [ring.header_type(i) for i in (1, 2, 3, 4)] == [3, 1, 1, 1]
    assert s.writer.tag_of(1) == "after reset"
    s.synchronize()  # the in-flight kernel completes; the marker after the reset follows it
    assert s.query()
    b.params.set(0, np.float32(4.0))
    b.launch(s)  # the queue goes on from the read index
    s.synchronize()
    got = np.empty_like(x)
    dev.copy_to_host(got, dy)
    np.testing.assert_allclose(got, 4 * x)
    dev.close()


def test_device_queue_cap_is_exact(fake, hsaco):
    dev = backend.HsaDevice(lib=fake, queue_size=64, slots=16, device_queue_cap=3)
    k = dev.load_module(hsaco).get_kernel("hsa_axpb")
    x, dx, dy = axpb_setup(dev, 8)
    s = dev.create_stream()
    b = k.bind(LaunchConfig(1, 64), [np.float32(1), dx, np.float32(0), dy, np.int32(8)])
    for _ in range(3):
        b.launch(s)
    assert s.waiting() == 3 and s.writer.free() == 0
    with pytest.raises(aql.QueueFull):
        s.writer.dispatch(b.template)
    dev.close()


def test_kill_needs_the_patch(dev):
    with pytest.raises(UnsupportedError, match="wave_kill"):
        dev.kill_running_waves()
