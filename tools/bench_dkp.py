#!/usr/bin/env python3
"""Dynamic kernel padding overheads on an NVIDIA GPU, as in the REEF paper's Fig. 15-17.

Sections of the result (``--out``, JSON through reef_rocm.bench.meta.write_result):

* ``selection``: time of one ``Selector.select`` call (host CPU, ns) per RT model, over its
  kernels with the BE model's kernels as candidates (Fig. 17).
* ``call_overhead`` per model: the sum over its kernels of event-timed medians of (a) the
  package's plain kernel, (b) the same body called through the function-pointer table, one
  virtual block per block (``reef_dkp_indirect_kernel``, cost of the indirect call and of the
  ABI's register saving), (c) the dispatcher running it alone on every SM (persistent
  blocks + atomics), with the proxy the selection would use, (d) the dispatcher at the
  largest budget only (no proxy kernels). (Fig. 16.)
* ``corun`` per (RT model, BE model): RT latency p50/p99 and BE throughput for rt-only (BE
  idle), streams (BE closed loop on a low-priority stream, RT on a high-priority one) and
  dkp (RT kernels padded with BE virtual blocks where the selection allows; BE kernels that
  no RT kernel can pad run unpadded between RT inferences, reported). BE throughput is in
  BE inferences per second; for dkp it counts finished virtual blocks weighted by their
  kernel's profiled time. (Fig. 15.)

    python tools/bench_dkp.py [--build .carry/dkp/bench] [--packages .carry/packages]
        [--profiles docs/results/profiles/h200] [--pairs vgg19:resnet152,...]
        [--out docs/results/dkp_h200.json]

A missing build is made first with nvcc (REEF_DKP_JOBS parallel compiles).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reef_rocm.bench.meta import write_result  # noqa: E402
from reef_rocm.dkp.build import (  # noqa: E402
    BUILD_FILE,
    INDIRECT_KERNEL,
    build_packages,
    load_build,
)  # fmt: skip
from reef_rocm.dkp.launch import DkpRuntime  # noqa: E402
from reef_rocm.dkp.profile import timed_us  # noqa: E402
from reef_rocm.dkp.select import BeCandidate, Selector, package_profiles  # noqa: E402
from reef_rocm.errors import GpuError, PackageError, UnsupportedError  # noqa: E402
from reef_rocm.gpu import LaunchConfig, open_device  # noqa: E402
from reef_rocm.gpu.api import DevicePtr  # noqa: E402
from reef_rocm.package.files import ModelPackage  # noqa: E402
from reef_rocm.runtime.executor import ModelInstance  # noqa: E402

DEFAULT_PAIRS = "vgg19:resnet152,resnet152:resnet152"  # DISB A: RT VGG-19, BE ResNet-152




def selection_time(sel: Selector, rt_prof, be_prof, rounds: int = 200) -> dict[str, Any]:
    cands = [[BeCandidate(p, p.blocks)] for p in be_prof]
    calls = 0
    picked = 0
    t = time.perf_counter_ns()
    for _ in range(rounds):
        for r in rt_prof:
            for c in cands[:: max(1, len(cands) // 8)]:
                picked += sel.select(r, c) is not None
                calls += 1
    ns = (time.perf_counter_ns() - t) / calls
    return {"ns_per_select": ns, "calls": calls, "padded_fraction": picked / calls}


def call_overhead(dev, rt: DkpRuntime, inst: ModelInstance, prof, sel: Selector, s, repeats):
    b = rt.build
    top = max(b.proxies, key=lambda p: p.budget)
    rows = []
    table_all = rt.table_for(rt.compute_units, s)
    for i, p in enumerate(prof):
        try:
            rows.append(_kernel_overhead(dev, rt, inst, p, i, sel, s, repeats, top, table_all))
        except UnsupportedError as e:  # e.g. a body over the device's shared-memory limit
            rows.append({"kernel": p.name, "skipped": str(e)})
        except GpuError as e:
            # CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: a proxy's register budget times the body's
            # threads per block exceeds the SM's register file (H200: 255 x 512 > 64 K);
            # recorded, not hidden: that pair cannot be padded at this budget
            if e.code != 701:
                raise
            rows.append({"kernel": p.name, "skipped": f"launch out of resources: {e}"})
    ok = [r for r in rows if "skipped" not in r]
    tot = {k: sum(r[k] for r in ok) for k in ("plain_us", "indirect_us", "dispatch_us",
                                               "dispatch_max_budget_us")}  # fmt: skip
    return {"model": inst.package.name, "totals": tot, "kernels_measured": len(ok),
            "kernels": rows}  # fmt: skip


def _kernel_overhead(dev, rt, inst, p, i, sel, s, repeats, top, table_all) -> dict[str, Any]:
    b = rt.build
    body = b.bodies[b.body_index(inst.package.name, i)].body
    pair = sel.pair(p, p)
    proxy = pair[0] if pair else top
    args = rt.args_buffer(inst, i, s)
    n = p.blocks
    plain = timed_us(dev, s, lambda st, i=i: inst.launch(i, st), repeats)
    if body.smem_bytes > dev.info.max_shared_memory_per_block:
        raise UnsupportedError(f"{p.name}: {body.smem_bytes} B of shared memory")
    mod = rt.modules[proxy.budget]
    ind = mod.get_kernel(INDIRECT_KERNEL).bind(
        LaunchConfig((n, 1, 1), (body.threads, 1, 1), body.smem_bytes),
        [np.int32(b.body_index(inst.package.name, i)), DevicePtr(args.ptr), np.int32(0)],
    )
    indirect = timed_us(dev, s, ind.launch, repeats)
    res = {}
    for name, px in (("dispatch", proxy), ("dispatch_max_budget", top)):
        pad = rt.bind(inst, i, None, 0, None, px, s)
        pad.set_table(table_all)
        res[name] = timed_us(dev, s, pad.launch, repeats)
    return {"kernel": p.name, "blocks": n, "threads": p.threads, "proxy": proxy.budget,
            "plain_us": plain, "indirect_us": indirect,
            **{f"{k}_us": v for k, v in res.items()}}  # fmt: skip


def _inputs(inst: ModelInstance, s) -> None:
    for k, x in enumerate(inst.package.reference_inputs()):
        inst.set_input(k, x, s)


def corun(dev, rt: DkpRuntime, pk_rt, pk_be, prof_rt, prof_be, sel, n_req: int) -> dict:
    least, most = dev.stream_priority_range()
    s_rt, s_be = dev.create_stream(priority=most), dev.create_stream(priority=least)
    ev0, ev1 = dev.create_event(), dev.create_event()
    out: dict[str, Any] = {"rt_model": pk_rt.name, "be_model": pk_be.name}
    be_total_us = sum(p.us for p in prof_be)
    try:
        with ModelInstance(dev, pk_rt) as a, ModelInstance(dev, pk_be) as b:
            _inputs(a, s_rt)
            _inputs(b, s_be)

            def rt_inference(launch_kernel) -> float:
                ev0.record(s_rt)
                for i in range(a.num_kernels):
                    launch_kernel(i)
                ev1.record(s_rt)
                ev1.synchronize()
                return ev0.elapsed_ms(ev1) * 1e3

            # rt-only
            lat = [rt_inference(lambda i: a.launch(i, s_rt)) for _ in range(n_req)]
            out["rt_only"] = _lat(lat) | {"be_inferences_per_s": 0.0}
            # be-only throughput
            t = time.perf_counter()
            for _ in range(10):
                b.launch_range(s_be)
            s_be.synchronize()
            out["be_only_inferences_per_s"] = 10 / (time.perf_counter() - t)
            # streams: BE closed loop (at most 2 inferences queued) next to RT requests
            lat, done, queued = [], 0, []
            t = time.perf_counter()
            for _ in range(n_req):
                while len(queued) < 2:
                    b.launch_range(s_be)
                    e = dev.create_event(timing=False)
                    e.record(s_be)
                    queued.append(e)
                lat.append(rt_inference(lambda i: a.launch(i, s_rt)))
                while queued and queued[0].query():
                    queued.pop(0).close()
                    done += 1
            for e in queued:
                e.synchronize()
                e.close()
                done += 1
            out["streams"] = _lat(lat) | {"be_inferences_per_s": done / (time.perf_counter() - t)}
            s_be.synchronize()
            out["dkp"] = _dkp_loop(dev, rt, a, b, prof_rt, prof_be, sel, s_rt, rt_inference,
                                   n_req, be_total_us)  # fmt: skip
    finally:
        for x in (ev0, ev1):
            x.close()
        for x in (s_rt, s_be):
            x.synchronize()
            x.close()
    return out


def _dkp_loop(dev, rt, a, b, prof_rt, prof_be, sel, s, rt_inference, n_req, be_total_us):
    """RT requests back to back; BE progresses inside padded launches only, except BE kernels
    no RT kernel can pad, which run unpadded after an RT request (counted)."""
    paddable = [any(sel.select(r, [BeCandidate(p, p.blocks)]) for r in prof_rt) for p in prof_be]
    pads: dict[tuple[int, int], Any] = {}
    refused: dict[tuple[int, int], str] = {}
    with rt.cursor(b) as cur:
        cur.reset(s)
        j, done_j, work_us, unpadded, padded_launches = 0, 0, 0.0, 0, 0
        promised = 0  # BE blocks of kernel j the launches so far may hand out (>= the cursor)
        lat = []

        def launch(i: int) -> None:
            nonlocal padded_launches, promised
            left = prof_be[j].blocks - promised
            pick = sel.select(prof_rt[i], [BeCandidate(prof_be[j], left)]) if left > 0 else None
            if pick is None:
                a.launch(i, s)
                return
            key = (i, j)
            pad = pads.get(key, False)
            if pad is False:
                try:
                    pad = rt.bind(a, i, b, j, cur, pick.proxy, s)
                except UnsupportedError as e:  # e.g. shared memory over the device limit
                    refused[key] = str(e)
                    pad = None
                pads[key] = pad
            if pad is None:
                a.launch(i, s)
                return
            promised = min(prof_be[j].blocks, promised + pick.be_count)
            pad.set_be_limit(promised)
            pad.set_table(rt.table_for(pick.rt_cus, s))
            pad.launch(s)
            padded_launches += 1

        # warm-up: bind what the first requests need, outside the timed loop
        rt_inference(launch)
        cur.reset(s)
        done_j = promised = 0
        t = time.perf_counter()
        for _ in range(n_req):
            lat.append(rt_inference(launch))
            cur.read_async(s).synchronize()
            now = cur.done(j)
            work_us += (now - done_j) / prof_be[j].blocks * prof_be[j].us
            done_j = promised = now  # the cursor stopped here (it is exact)
            if done_j >= prof_be[j].blocks:
                j, done_j = _advance(j, len(prof_be), cur, s)
                promised = 0
            while not paddable[j]:  # no RT kernel can pad it: run it between RT requests
                b.launch(j, s)
                unpadded += 1
                work_us += prof_be[j].us
                j, done_j = _advance(j, len(prof_be), cur, s)
                promised = 0
        s.synchronize()
        wall = time.perf_counter() - t
        rt.forget(a)
        rt.forget(b)
    return _lat(lat) | {
        "be_inferences_per_s": work_us / be_total_us / wall,
        "be_kernels_unpadded": unpadded, "padded_launches": padded_launches,
        "paddable_be_kernels": int(sum(paddable)), "be_kernels": len(prof_be),
        "pairs_refused": {f"{i}:{j}": why for (i, j), why in refused.items()},
    }  # fmt: skip


def _advance(j: int, n: int, cur, s) -> tuple[int, int]:
    """The BE task's next kernel; after its last, a new inference (cursor zeroed)."""
    j = (j + 1) % n
    if j == 0:
        cur.reset(s)
    return j, 0


def _lat(v: list[float]) -> dict[str, float]:
    return {"rt_p50_us": float(np.percentile(v, 50)), "rt_p99_us": float(np.percentile(v, 99)),
            "rt_mean_us": float(np.mean(v))}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", type=Path, default=REPO / ".carry" / "dkp" / "bench")
    ap.add_argument("--packages", type=Path, default=REPO / ".carry" / "packages")
    ap.add_argument("--profiles", type=Path, default=REPO / "docs/results/profiles/h200")
    ap.add_argument("--pairs", default=DEFAULT_PAIRS)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/dkp_h200.json")
    ap.add_argument(
        "--selection-only",
        action="store_true",
        help="only the selection time (host CPU; no GPU): SMs from --sms",
    )
    ap.add_argument("--sms", type=int, default=132, help="SM count for --selection-only")
    a = ap.parse_args()
    pairs = [tuple(p.split(":")) for p in a.pairs.split(",")]
    models = list(dict.fromkeys(m for p in pairs for m in p))
    pkgs = {m: ModelPackage.load(next(a.packages.glob(f"{m}-cuda_*"))) for m in models}
    if not (a.build / BUILD_FILE).is_file():
        print(f"building DKP code objects for {models} into {a.build} ...", flush=True)
        build_packages(list(pkgs.values()), a.build)
    build = load_build(a.build)
    try:
        for p in pkgs.values():
            build.check_package(p)
    except PackageError as e:
        print(f"{e}: rebuilding into {a.build}", flush=True)
        build = build_packages(list(pkgs.values()), a.build)
    profs = {}
    for m, p in pkgs.items():
        doc = json.loads(next(a.profiles.glob(f"{m}-*.json")).read_text())
        profs[m] = package_profiles(p, doc, build)
    result: dict[str, Any] = {"benchmark": "dkp", "build": str(a.build), "pairs": a.pairs,
                              "budgets": [p.budget for p in build.proxies]}  # fmt: skip
    if a.selection_only:
        sel = Selector(build.arch, a.sms, build.proxies)
        result["selection"] = {f"{r}:{b}": selection_time(sel, profs[r], profs[b])
                               for r, b in pairs}  # fmt: skip
        result["note"] = (f"host CPU only: Selector.select with {a.sms} SMs of {build.arch}, "
                          "profiles from --profiles; no GPU was used")  # fmt: skip
        print(json.dumps(result["selection"], indent=1))
        print(f"wrote {write_result(a.out, result, None, ' '.join(sys.argv))}")
        return 0
    dev = open_device("cuda")
    try:
        with DkpRuntime(dev, build) as rt:
            s = dev.create_stream()
            rt.probe_hw_ids(s)
            result["hw_ids"] = {"count": len(rt.hw_ids), "min": min(rt.hw_ids),
                                "max": max(rt.hw_ids)}  # fmt: skip
            sel = Selector(build.arch, rt.compute_units, build.proxies)
            result["proxies"] = [{"budget": p.budget, "registers": p.dispatcher.registers,
                                  "stack_bytes": p.dispatcher.scratch_bytes}
                                 for p in build.proxies]  # fmt: skip
            result["selection"] = {f"{r}:{b}": selection_time(sel, profs[r], profs[b])
                                   for r, b in pairs}  # fmt: skip
            result["call_overhead"] = []
            for m in models:
                with ModelInstance(dev, pkgs[m]) as inst:
                    _inputs(inst, s)
                    result["call_overhead"].append(
                        call_overhead(dev, rt, inst, profs[m], sel, s, a.repeats)
                    )
                    rt.forget(inst)
                print(m, result["call_overhead"][-1]["totals"], flush=True)
            result["corun"] = []
            for r, b in pairs:
                res = corun(dev, rt, pkgs[r], pkgs[b], profs[r], profs[b], sel, a.requests)
                result["corun"].append(res)
                print(json.dumps(res), flush=True)
            s.close()
    finally:
        path = write_result(a.out, result, dev, " ".join(sys.argv))
        dev.close()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
