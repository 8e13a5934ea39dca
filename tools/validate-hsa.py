#!/usr/bin/env python3
"""Validate reef_rocm's HSA queue manager (reef_rocm.rocm.hsa, backend "hsa") on an AMD GPU.

Run on the AMD machine, from the repository root (see docs/amd.md):

    python tools/validate-hsa.py                 # GPU 0, kernels built with hipcc
    python tools/validate-hsa.py --device 1 --json docs/results/hsa-validation.json

Each check prints PASS / FAIL / SKIP and what it compared. Exit status: 0 when no check
failed, 1 otherwise, 2 when the backend cannot start (the reason is printed). Checks that
need the reef KFD patch (queue reset, wave kill) are skipped with the reason when the patch
does not offer them for the GPU. Nothing in this repository has been run on AMD hardware;
this script is how that gets done.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reef_rocm import gpu  # noqa: E402
from reef_rocm.errors import BackendUnavailable, ReefError  # noqa: E402
from reef_rocm.gpu.api import LaunchConfig  # noqa: E402
from reef_rocm.rocm.hsa import aql, signals  # noqa: E402
from reef_rocm.rocm.hsa import cu_mask as cum  # noqa: E402

SRC = ROOT / "hip_kernels" / "hsa_kernels.hip"
SPIN_FOREVER = 1 << 40


class Skip(Exception):
    pass


def build(arch: str, out_dir: Path) -> bytes:
    hipcc = shutil.which("hipcc") or "/opt/rocm/bin/hipcc"
    if not Path(hipcc).exists():
        raise BackendUnavailable("hipcc not found: install ROCm's hipcc or pass --hsaco")
    out = out_dir / f"hsa_kernels_{arch}.hsaco"
    r = subprocess.run([hipcc, f"--offload-arch={arch}", "--genco", "--no-gpu-bundle-output",
                        str(SRC), "-o", str(out)], capture_output=True, text=True,
                       env=dict(os.environ, HIP_PLATFORM="amd"))
    if r.returncode:
        raise BackendUnavailable(f"hipcc failed for {arch}:\n{r.stderr[-2000:]}")
    return out.read_bytes()


class Validator:
    def __init__(self, dev: Any, image: bytes) -> None:
        self.dev = dev
        self.mod = dev.load_module(image)
        self.axpb = self.mod.get_kernel("hsa_axpb")
        self.spin = self.mod.get_kernel("hsa_spin")
        self.where = self.mod.get_kernel("hsa_where")
        self.flag = dev.alloc_host_mapped(4)
        self.started = dev.alloc_host_mapped(4)
        self.results: list[dict[str, Any]] = []

    # --- helpers --------------------------------------------------------------------------
    def _axpb(self, stream: Any, n: int = 4096) -> tuple[Any, Any, np.ndarray]:
        x = np.arange(n, dtype=np.float32)
        dx, dy = self.dev.alloc(4 * n), self.dev.alloc(4 * n)
        self.dev.copy_to_device(dx, x)
        self.dev.memset32(dy, 0, n)
        b = self.axpb.bind(LaunchConfig((n + 255) // 256, 256),
                           [np.float32(2.0), dx, np.float32(1.0), dy, np.int32(n)])
        b.launch(stream)
        return dx, dy, 2.0 * x + 1.0

    def _check_axpb(self, stream: Any) -> str:
        dx, dy, want = self._axpb(stream)
        stream.synchronize()
        got = np.empty_like(want)
        self.dev.copy_to_host(got, dy)
        dx.close()
        dy.close()
        bad = int(np.count_nonzero(got != want))
        if bad:
            raise AssertionError(f"{bad} of {want.size} outputs differ from 2*x+1")
        return f"{want.size} outputs equal 2*x+1"

    def _spin_launch(self, spins: int = SPIN_FOREVER, blocks: int = 1) -> Any:
        return self.spin.bind(LaunchConfig(blocks, 64),
                              [self.flag, self.started, np.int64(spins)])

    def _set_flag(self, v: int) -> None:
        self.flag.host.view(np.int32)[0] = v

    # --- checks -------------------------------------------------------------------------
    def check_dispatch(self) -> str:
        """A kernel dispatched through our AQL queue computes the right result."""
        with self.dev.create_stream() as s:
            return self._check_axpb(s)

    def check_accounting(self) -> str:
        """While a barrier on a host-held signal blocks the queue, waiting() counts exactly
        the packets behind it; after release everything drains and outputs are right."""
        with self.dev.create_stream() as s:
            gate = signals.HsaSignal(self.dev.runtime, 1)
            s._barrier([gate.handle], None, "gate")
            dx, dy, want = self._axpb(s)
            n_more = 5
            for _ in range(n_more):
                self.axpb.bind(LaunchConfig(16, 256), [
                    np.float32(2.0), dx, np.float32(1.0), dy, np.int32(4096)]).launch(s)
            time.sleep(0.05)
            w, r = s.writer.write_index, s.writer.read_index()
            waiting = s.waiting()
            gate.store(0)
            s.synchronize()
            gate.close()
            got = np.empty_like(want)
            self.dev.copy_to_host(got, dy)
            dx.close()
            dy.close()
            if not 1 + n_more <= waiting <= 2 + n_more:
                raise AssertionError(f"waiting()={waiting} (write {w}, read {r}) with "
                                     f"{2 + n_more} packets published behind the gate")
            if s.waiting() != 0 or not np.array_equal(got, want):
                raise AssertionError(f"after release waiting()={s.waiting()}, outputs "
                                     f"{'right' if np.array_equal(got, want) else 'wrong'}")
            return (f"blocked: write {w}, read {r}, waiting {waiting} (gate + {1 + n_more} "
                    "dispatches); released: waiting 0, outputs right")

    def check_cap(self) -> str:
        """A writer with a device-queue cap refuses the packet past it, exactly."""
        with self.dev.create_stream() as s:
            gate = signals.HsaSignal(self.dev.runtime, 1)
            w = aql.AqlWriter(s.queue, self.dev.signal_ops, cap=4, name="cap-test")
            w.barrier_and([gate.handle])
            time.sleep(0.02)
            consumed = w.read_index()
            published = 1
            try:
                for _ in range(8):
                    w.barrier_and([])
                    published += 1
            except aql.QueueFull:
                pass
            gate.store(0)
            deadline = time.monotonic() + 5
            while w.waiting() and time.monotonic() < deadline:
                time.sleep(0.001)
            gate.close()
            if published - consumed != 4:
                raise AssertionError(f"published {published}, consumed {consumed}: the cap "
                                     "of 4 waiting packets was not exact")
            return f"published {published} with {consumed} consumed: cap 4 exact"

    def check_events(self) -> str:
        """Event timestamps bracket a kernel that spins for a while."""
        with self.dev.create_stream() as s:
            a, b = self.dev.create_event(), self.dev.create_event()
            self._set_flag(0)
            a.record(s)
            self._spin_launch(spins=200_000).launch(s)
            b.record(s)
            s.synchronize()
            ms = a.elapsed_ms(b)
            a.close()
            b.close()
            if not ms > 0:
                raise AssertionError(f"elapsed_ms = {ms}")
            return f"elapsed {ms:.3f} ms across a spinning kernel"

    def check_deferred_write(self) -> str:
        """write_value32 behind a running kernel lands only after it finishes."""
        target = self.dev.alloc_host_mapped(4)
        target.host.view(np.int32)[0] = 0
        with self.dev.create_stream() as s:
            self._set_flag(0)
            self._spin_launch().launch(s)
            s.write_value32(target, 7)
            time.sleep(0.05)
            early = int(target.host.view(np.int32)[0])
            self._set_flag(1)
            s.synchronize()
            deadline = time.monotonic() + 5
            while target.host.view(np.int32)[0] != 7 and time.monotonic() < deadline:
                time.sleep(0.001)
            late = int(target.host.view(np.int32)[0])
        target.close()
        if early != 0 or late != 7:
            raise AssertionError(f"value while the kernel ran {early} (want 0), after {late}")
        return "0 while the kernel spun, 7 after it finished"

    def check_cu_mask(self) -> str:
        """A queue masked to one XCC runs only there (XCC_ID), on multi-XCC GPUs; on one-XCC
        GPUs a queue masked to SE 0 (uniform harvest only) runs only on SE 0 (HW_ID)."""
        info = self.dev.info
        n_xcc = int(info.extra.get("xcc_count", 1))
        total = info.compute_units
        blocks = 4 * total
        if n_xcc > 1:
            per = total // n_xcc
            logical = [1 + n_xcc * k for k in range(per)]  # XCC 1's bits (mod-n interleave)
            want = "XCC 1"
        else:
            try:
                topo = cum.CuTopology.from_counts(1, int(info.extra["shader_engines"]),
                                                  int(info.extra["shader_arrays_per_se"]),
                                                  total)
            except (ValueError, KeyError, ZeroDivisionError) as e:
                raise Skip(f"per-SH harvest unknown ({e})") from e
            words = cum.mask_words(topo, [c for c in topo.xcc_cus(0) if c.se == 0])
            logical = [32 * i + b for i, wd in enumerate(words) for b in range(32) if wd >> b & 1]
            want = "SE 0"
        out = self.dev.alloc_host_mapped(8 * blocks)
        with self.dev.create_stream(cu_mask=logical) as s:
            self.where.bind(LaunchConfig(blocks, 64), [out]).launch(s)
            s.synchronize()
        vals = out.host.view(np.uint32).reshape(blocks, 2).copy()
        out.close()
        se = (vals[:, 0] >> 13) & 0x7
        cu = (vals[:, 0] >> 8) & 0xF
        xcc = vals[:, 1]
        where = sorted(set(zip(xcc.tolist(), se.tolist(), strict=True)))
        if n_xcc > 1:
            ok = set(xcc.tolist()) == {1}
        else:
            ok = set(se.tolist()) == {0}
        detail = (f"mask of {len(logical)} logical CUs for {want}: blocks ran on (xcc, se) "
                  f"{where}, {len(set(zip(xcc.tolist(), se.tolist(), cu.tolist(), strict=True)))}"
                  " distinct CUs")
        if not ok:
            raise AssertionError(detail)
        return detail

    def check_reset(self) -> str:
        """RESET_QUEUE by ring address drops the waiting kernels per the contract; the queue
        works again afterwards."""
        if not self.dev.capabilities.queue_reset:
            raise Skip("the reef KFD patch does not offer reset_queue for this GPU "
                       "(python -m reef_rocm.rocm.kfd)")
        with self.dev.create_stream() as s:
            self._set_flag(0)
            self.started.host.view(np.int32)[0] = 0
            running = self._spin_launch()
            running.launch(s)
            queued = 6
            for _ in range(queued):
                self._spin_launch().launch(s)
            time.sleep(0.05)
            before = (s.writer.write_index, s.writer.read_index())
            dropped = self.dev.clear_queue(s)
            rep = s.last_reset
            bad_hdr = [d.index for d in rep.dropped
                       if ctypes.c_uint16.from_address(
                           s.queue.ring_base + (d.index % s.queue.size) * 64).value
                       != aql.INVALID_HEADER]
            bad_sig = [sg for sg in rep.errored_signals
                       if self.dev.signal_ops.load(sg) != signals.DROPPED]
            self._set_flag(1)  # the in-flight kernel, if it survived, may finish now
            s.synchronize()
            after = self._check_axpb(s)
        if bad_hdr or bad_sig or dropped < queued - 1:
            raise AssertionError(f"dropped {dropped} (want >= {queued - 1}); headers not "
                                 f"INVALID at {bad_hdr}; signals not DROPPED {bad_sig}")
        return (f"before: write {before[0]}, read {before[1]}; driver restarted at "
                f"{rep.read_index}, dropped {dropped} kernels, in flight {list(rep.in_flight)};"
                f" headers INVALID, signals DROPPED; afterwards {after}")

    def check_kill(self) -> str:
        """KILL_WAVES ends a kernel that would spin for hours."""
        if not self.dev.capabilities.wave_kill:
            raise Skip("the reef KFD patch does not offer kill_waves for this GPU "
                       "(needs the driver without HWS; python -m reef_rocm.rocm.kfd)")
        with self.dev.create_stream() as s:
            self._set_flag(0)
            self._spin_launch(blocks=self.dev.info.compute_units).launch(s)
            time.sleep(0.1)
            t0 = time.perf_counter()
            ret = self.dev.kill_running_waves()
            deadline = time.monotonic() + 5
            while not s.query() and time.monotonic() < deadline:
                time.sleep(0.0005)
            done = s.query()
            ms = (time.perf_counter() - t0) * 1e3
            self._set_flag(1)
            s.synchronize()
        if not done or ret == 0:
            raise AssertionError(f"kill returned {ret}, stream done: {done} after {ms:.1f} ms")
        return f"kill returned {ret}; the spinning kernel ended {ms:.2f} ms after the call"

    def run(self) -> int:
        checks = [self.check_dispatch, self.check_accounting, self.check_cap,
                  self.check_events, self.check_deferred_write, self.check_cu_mask,
                  self.check_reset, self.check_kill]
        failed = 0
        for fn in checks:
            name = fn.__name__.removeprefix("check_")
            doc = " ".join((fn.__doc__ or "").split())
            try:
                status, detail = "PASS", fn()
            except Skip as e:
                status, detail = "SKIP", str(e)
            except (AssertionError, ReefError) as e:
                status, detail = "FAIL", f"{type(e).__name__}: {e}"
                failed += 1
            print(f"{status:4}  {name:15} {doc}\n      -> {detail}", flush=True)
            self.results.append({"check": name, "status": status, "what": doc,
                                 "detail": detail})
        return failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", type=int, default=0, help="HSA GPU agent index")
    p.add_argument("--hsaco", help="prebuilt hip_kernels/hsa_kernels.hip code object")
    p.add_argument("--json", help="also write the results here (docs/results/...)")
    args = p.parse_args(argv)
    report = gpu.probe("hsa")
    print(f"hsa backend: {'available' if report.available else 'NOT available'} "
          f"{report.reason}".rstrip())
    for info, caps in zip(report.devices, report.capabilities, strict=True):
        print(f"  GPU {info.ordinal}: {info.name} {info.arch}, {info.compute_units} CUs, "
              f"wave{info.warp_size}, {info.extra.get('xcc_count')} XCC, kfd gpu_id "
              f"{info.kfd_gpu_id}; queue_reset {caps.queue_reset}, wave_kill {caps.wave_kill}")
    if not report.available:
        return 2
    try:
        dev = gpu.open_device("hsa", args.device)
    except BackendUnavailable as e:
        print(f"cannot open GPU {args.device}: {e}")
        return 2
    with dev, tempfile.TemporaryDirectory() as tmp:
        image = Path(args.hsaco).read_bytes() if args.hsaco else build(dev.info.arch, Path(tmp))
        v = Validator(dev, image)
        failed = v.run()
        print(f"{len(v.results) - failed - sum(r['status'] == 'SKIP' for r in v.results)} "
              f"passed, {failed} failed, {sum(r['status'] == 'SKIP' for r in v.results)} "
              "skipped")
        if args.json:
            from reef_rocm.bench.meta import write_result

            write_result(args.json, {"validation": "hsa queue manager",
                                     "device": dev.info.as_dict(), "checks": v.results},
                         command=" ".join(["python", "tools/validate-hsa.py", *sys.argv[1:]]))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
