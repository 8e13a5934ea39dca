#!/usr/bin/env python3
"""In-kernel preemption points: start latency versus best-effort throughput, per poll
interval N (iterations of a kernel's outer loop between flag reads).

Runs on a GPU host without TVM, from the fixtures that
``python -m reef_rocm.compiler.transform_fixtures .carry/transform`` builds (cubins of the
plain kernel and of its preemptible variants: block-start check only, and polls every
64/16/4/1 iterations; the dkp_pre* variants run the same as persistent kernels, one wave of
physical blocks grid-striding over the virtual blocks, so no queued blocks are left to
drain after the flag). For each workload:

* throughput: each variant launched ``--reps`` times (variants interleaved), timed with
  events; cost = median time / plain median time - 1;
* preemption latency: the kernel is launched on a low-priority stream; after a random
  delay (busy-wait, uniform over 10-90% of the plain kernel time) the host has a
  high-priority side stream record an event and write the flag (cuStreamWriteValue32);
  latency = that event to an event recorded after the kernel on its stream, i.e. from the
  flag being raised to the kernel having exited. Trials where the kernel had already
  finished before the flag are counted as missed and left out. For ``plain`` the flag is
  ignored, so its latency is the remaining kernel time (what waiting would cost).

Usage: tools/bench_poll_interval.py [--fixtures .carry/transform] [--out FILE]
Writes JSON (card, driver, date, git commit, per-variant numbers) to docs/results/ by
default.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reef_rocm.bench.meta import run_metadata  # noqa: E402
from reef_rocm.gpu import LaunchConfig, open_device  # noqa: E402


def _busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _stats(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    a = np.asarray(xs)
    return {
        "n": len(xs),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


class Workload:
    def __init__(self, dev, fixtures: Path, name: str, w: dict, seed: int = 0) -> None:
        self.dev, self.name, self.w = dev, name, w
        (self.shape,) = w["kernels"]
        self.cfg = LaunchConfig(tuple(self.shape["grid"]), tuple(self.shape["block"]))
        rng = np.random.default_rng(seed)
        self.mem = {}
        for b in w["buffers"]:
            n = int(np.prod(b["shape"]))
            self.mem[b["name"]] = dev.alloc(n * 4)
            if b["role"] == "input":
                data = rng.standard_normal(n).astype(b["dtype"])
                dev.copy_to_device(self.mem[b["name"]], data)
        self.flag, self.slot = dev.alloc(4), dev.alloc(4)
        self.nblocks = self.cfg.num_blocks
        self.launches = {}
        self.info: dict[str, dict] = {}
        for vname, v in w["variants"].items():
            if vname != "plain" and not vname.startswith(("pre", "dkp_pre")):
                continue
            (k,) = v["kernels"]
            mod = dev.load_module((fixtures / v["cubin"]).read_bytes())
            kern = mod.get_kernel(k["name"])
            threads = self.cfg.threads_per_block
            per_cu = kern.max_active_blocks_per_cu(threads)
            cfg = self.cfg
            if "dkp" in v:  # persistent: one wave of physical blocks, grid-stride over all
                grid = dev.info.compute_units * max(per_cu, 1)
                cfg = LaunchConfig((grid, 1, 1), self.cfg.block)
            pre = v.get("preempt", {})
            scalars = {
                "reef_vblock_begin": 0,
                "reef_vblock_count": self.nblocks,
                "reef_grid_blocks": cfg.grid[0],
                # the poll interval is a launch argument; the variant's name gives its value
                **{n: pre.get("poll_interval") or 0 for n in pre.get("poll_params", []) if n},
            }
            args = []
            for p in k["params"]:
                if p["name"] == "reef_preempt_flag":
                    args.append(self.flag)
                elif p["name"] == "reef_completion_slot":
                    args.append(self.slot)
                elif p["kind"] == "scalar":
                    args.append(np.int32(scalars[p["name"]]))
                else:
                    args.append(self.mem[p["name"]])
            self.launches[vname] = (kern.bind(cfg, args), v.get("preempt", {}))
            attrs = kern.attributes
            self.info[vname] = {
                "grid": list(cfg.grid),
                "registers": attrs.get("registers"),
                "shared_bytes": attrs.get("shared_bytes"),
                "blocks_per_sm": per_cu,
            }

    def reset(self) -> None:
        self.dev.memset32(self.flag, 0, 1)
        self.dev.memset32(self.slot, 0, 1)

    def slot_value(self) -> int:
        v = np.zeros(1, dtype=np.uint32)
        self.dev.copy_to_host(v, self.slot)
        return int(v[0])


def bench(dev, fixtures: Path, name: str, w: dict, reps: int, trials: int) -> dict:
    wl = Workload(dev, fixtures, name, w)
    least, most = dev.stream_priority_range()
    be, side = dev.create_stream(priority=least), dev.create_stream(priority=most)
    e0, e1 = dev.create_event(), dev.create_event()
    names = list(wl.launches)

    # throughput, variants interleaved so clock/thermal drift hits all alike
    times: dict[str, list[float]] = {v: [] for v in names}
    wl.reset()
    for v in names:  # warm-up (module load, caches)
        wl.launches[v][0].launch(be)
    be.synchronize()
    for _ in range(reps):
        for v in names:
            e0.record(be)
            wl.launches[v][0].launch(be)
            e1.record(be)
            be.synchronize()
            times[v].append(e0.elapsed_ms(e1))
    plain_ms = float(np.median(times["plain"]))
    nblocks = wl.nblocks
    print(f"[{name}] plain {plain_ms:.3f} ms, {nblocks} blocks", file=sys.stderr, flush=True)

    out: dict = {
        "grid": list(wl.cfg.grid),
        "block": list(wl.cfg.block),
        "blocks": nblocks,
        "plain_ms": plain_ms,
        "variants": {},
    }
    rnd = random.Random(1)
    for v in names:
        launch, info = wl.launches[v]
        med = float(np.median(times[v]))
        lat: list[float] = []
        fractions: list[float] = []
        missed = 0
        for _ in range(trials):
            wl.reset()
            delay = rnd.uniform(0.1, 0.9) * plain_ms / 1e3
            launch.launch(be)
            _busy_wait(delay)
            e0.record(side)
            side.write_value32(wl.flag, 1)
            e1.record(be)
            be.synchronize()
            side.synchronize()
            us = e0.elapsed_ms(e1) * 1e3
            done = wl.slot_value() if v != "plain" else None
            if us <= 0 or (done is not None and done >= nblocks):
                missed += 1  # the kernel was over before the flag went up
                continue
            lat.append(us)
            if done is not None:
                fractions.append(done / nblocks)
        entry = {
            **wl.info[v],
            "poll_interval": info.get("poll_interval"),
            "poll_loops": info.get("poll_loops"),
            "kernel_ms_median": med,
            "kernel_ms_p90": float(np.percentile(times[v], 90)),
            "throughput_cost_pct": (med / plain_ms - 1) * 100,
            "latency_us": _stats(lat),
            "missed": missed,
            "completed_block_fraction_mean": float(np.mean(fractions)) if fractions else None,
        }
        out["variants"][v] = entry
        lp = entry["latency_us"]
        print(
            f"[{name}] {v:8s} {med:8.3f} ms ({entry['throughput_cost_pct']:+6.1f}%)  "
            f"latency p50 {lp.get('p50', float('nan')):8.1f} us  "
            f"p99 {lp.get('p99', float('nan')):8.1f} us  missed {missed}",
            file=sys.stderr,
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default=str(ROOT / ".carry" / "transform"))
    ap.add_argument("--out", default=None, help="JSON file (default docs/results/...)")
    ap.add_argument("--workloads", default="bench_matmul,bench_conv,rows")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--trials", type=int, default=100)
    args = ap.parse_args(argv)

    fixtures = Path(args.fixtures)
    manifest = json.loads((fixtures / "manifest.json").read_text())
    dev = open_device("cuda")
    result = {
        **run_metadata(dev),
        "benchmark": "poll_interval",
        "fixtures_tvm": manifest.get("tvm"),
        "method": (
            "throughput: median of --reps event-timed launches per variant, interleaved; "
            "latency: flag raised by cuStreamWriteValue32 on a high-priority side stream at "
            "a random point (10-90% of the plain kernel time) of a kernel on a "
            "low-priority stream; event before the write -> event after the kernel"
        ),
        "reps": args.reps,
        "trials": args.trials,
        "workloads": {},
    }
    if args.out:
        out = Path(args.out)
    else:
        day = _dt.date.today().isoformat()
        out = ROOT / "docs" / "results" / f"poll_interval_{dev.info.arch}_{day}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in [n for n in args.workloads.split(",") if n]:
        if name not in manifest["workloads"]:
            print(f"skip {name}: not in fixtures", file=sys.stderr)
            continue
        result["workloads"][name] = bench(
            dev, fixtures, name, manifest["workloads"][name], args.reps, args.trials
        )
        out.write_text(json.dumps(result, indent=1))  # after each workload: partial runs count
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
