#!/usr/bin/env python3
"""What `reef serve` adds to RT latency: DISB-A (RT VGG-19 at a uniform 100 req/s against a
closed-loop BE ResNet-152) run twice in one invocation on one GPU: in-process (the scheduler's
``submit`` from threads of this process) and through the server (``reef serve`` in its own
process, RT and BE each in a separate client process, tensors through shared memory). RT
latency is end to end on the host clock, arrival to outputs in hand, at batch 1; the goal is
server p99 - in-process p99 <= 150 us.

    # the lead's H200 run (zoo packages compiled on the CPU machine, carried in .carry/packages)
    python tools/bench_server.py --backend cuda --packages .carry/packages \\
        --rt vgg19 --be resnet152 --duration 30 --out docs/results/server_overhead_h200.json
    # here, on the sim (simulated packages; times are host wall-clock of the model, not a GPU)
    python tools/bench_server.py --backend sim --duration 5 --out /tmp/server_overhead_sim.json

Writes JSON with reef_rocm.bench.meta.write_result: card, driver, date, git commit, command;
per mode RT p50/p99/mean/max, RT and BE counts and BE throughput; the server's own share
(server_us) and the scheduler's (scheduler_us) per RT request; the overhead and the goal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_US = 150.0


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def summary(lat_us: list[float]) -> dict[str, Any]:
    return {
        "count": len(lat_us), "p50_us": _pct(lat_us, 50), "p99_us": _pct(lat_us, 99),
        "mean_us": float(np.mean(lat_us)) if lat_us else None,
        "max_us": float(np.max(lat_us)) if lat_us else None,
    }  # fmt: skip


def wait_until(t: float) -> None:
    """Sleep to ~0.3 ms before ``t`` (perf_counter), then spin: arrivals on time."""
    while True:
        left = t - time.perf_counter()
        if left <= 0:
            return
        if left > 0.0003:
            time.sleep(left - 0.0003)


def rt_open_loop(infer, x: Any, rate: float, duration: float, warmup: float) -> list[float]:
    """Uniform arrivals at ``rate``; one request at a time (a late one delays the next, and
    its latency still counts from its own arrival). Latencies after ``warmup`` s, in us."""
    period = 1.0 / rate
    t0 = time.perf_counter() + 0.05
    out = []
    i = 0
    while True:
        arrival = t0 + i * period
        if arrival - t0 > duration:
            return out
        wait_until(arrival)
        infer(x)
        done = time.perf_counter()
        if arrival - t0 >= warmup:
            out.append((done - arrival) * 1e6)
        i += 1


# ---------------------------------------------------------------------- packages
def sim_packages(root: Path, cus: int) -> tuple[Path, str, str]:
    """Stand-ins for VGG-19 (RT) and ResNet-152 (BE) on the sim: chains of short and a few
    long kernels (not their real timings: the sim answers whether the script works)."""
    from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package

    build_sim_package(root / "vgg19-sim", "vgg19", [
        SimKernelPlan(f"v{i}", grid=cus, block=64, duration_us=30.0, blocks_per_cu=1)
        for i in range(12)
    ], compute_units=cus, elements=4096)  # fmt: skip
    build_sim_package(root / "resnet152-sim", "resnet152", [
        SimKernelPlan(f"r{i}", grid=cus * (4 if i % 5 == 2 else 1), block=64, blocks_per_cu=1,
                      duration_us=120.0 if i % 5 == 2 else 10.0, loop_trips=16)
        for i in range(30)
    ], compute_units=cus, elements=4096, poll_arg=True, seed=1)  # fmt: skip
    return root, "vgg19", "resnet152"


def find(packages: Path, name: str, arch: str) -> Path:
    from reef_rocm.server.catalog import PackageCatalog

    return PackageCatalog(packages).by_name(name, "", arch).path


# ---------------------------------------------------------------------- in-process
def run_in_process(dev: Any, rt_pkg: Path, be_pkg: Path, args: argparse.Namespace) -> dict:
    from reef_rocm.package.files import ModelPackage
    from reef_rocm.sched import Scheduler
    from reef_rocm.server.app import sched_options

    rp, bp = ModelPackage.load(rt_pkg), ModelPackage.load(be_pkg)
    with Scheduler(dev, sched_options(args.policy)) as s:
        hr, hb = s.load(rp, "rt", "rt"), s.load(bp, "be", "be")
        xr, xb = rp.reference_inputs(), bp.reference_inputs()
        for _ in range(3):  # warm both paths
            s.submit(hr, xr).result()
            s.submit(hb, xb).result()
        stop = threading.Event()
        be_done = [0]

        def be_loop() -> None:
            while not stop.is_set():
                s.submit(hb, xb).result()
                be_done[0] += 1

        t = threading.Thread(target=be_loop, daemon=True)
        t.start()
        t0 = time.perf_counter()
        lat = rt_open_loop(lambda x: s.submit(hr, x).result(), xr, args.rate, args.duration,
                           args.warmup)  # fmt: skip
        elapsed = time.perf_counter() - t0
        stop.set()
        t.join(timeout=60)
        status = s.status()
    return {**summary(lat), "be_completed": be_done[0],
            "be_per_s": be_done[0] / elapsed, "preemptions": status.preemptions}  # fmt: skip


# ---------------------------------------------------------------------- through the server
def client_main(args: argparse.Namespace) -> None:
    """A client process of the server phase: ``--client rt`` (open loop, prints JSON) or
    ``--client be`` (closed loop until SIGTERM, prints its count)."""
    from reef_rocm.client import Client
    from reef_rocm.package.files import ModelPackage

    with Client(args.address, name=f"bench-{args.client}", workload="disb-a") as c:
        m = c.load(zoo=args.model, priority=args.client)
        x = ModelPackage.load(args.pkg).reference_inputs()
        for _ in range(3):
            m.infer(x)
        if args.client == "be":
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *a: stop.set())
            print("ready", flush=True)
            n, t0 = 0, time.perf_counter()
            while not stop.is_set():
                m.infer(x)
                n += 1
            print(json.dumps({"be_completed": n, "be_per_s": n / (time.perf_counter() - t0)}))
            return
        timings: list[tuple[float, float]] = []

        def infer(x: Any) -> None:
            m.infer(x)
            timings.append((m.last_timing.server_us, m.last_timing.scheduler_us))

        lat = rt_open_loop(infer, x, args.rate, args.duration, args.warmup)
        keep = timings[-len(lat) :] if lat else []
        print(json.dumps({
            **summary(lat),
            "server_us": summary([a for a, _ in keep]),
            "scheduler_us": summary([b for _, b in keep]),
        }))  # fmt: skip


def run_through_server(packages: Path, rt: tuple[str, Path], be: tuple[str, Path],
                       args: argparse.Namespace, tmp: Path) -> dict:  # fmt: skip
    sock = tmp / "run" / "reef.sock"
    log = tmp / "serve.log"
    cmd = [sys.executable, "-m", "reef_rocm.cli", "serve", "--packages", str(packages),
           "--policy", args.policy, "--backend", args.backend, "--gpus", str(args.gpu),
           "--listen", f"unix:{sock}", "--log-level", "warning"]  # fmt: skip
    if args.backend == "sim":
        cmd += ["--sim-option", f"compute_units={args.sim_cus}"]
    with open(log, "w") as f:
        srv = subprocess.Popen(cmd, cwd=ROOT, stderr=f)
    try:
        deadline = time.monotonic() + 120
        while not sock.exists():
            if srv.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"reef serve did not start: {log.read_text()}")
            time.sleep(0.05)
        me = [sys.executable, str(Path(__file__).resolve()), "--address", f"unix:{sock}",
              "--rate", str(args.rate), "--duration", str(args.duration),
              "--warmup", str(args.warmup)]  # fmt: skip
        bec = subprocess.Popen([*me, "--client", "be", "--model", be[0], "--pkg", str(be[1])],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
        if bec.stdout.readline().strip() != "ready":
            raise SystemExit("BE client did not start")
        rtc = subprocess.run(
            [*me, "--client", "rt", "--model", rt[0], "--pkg", str(rt[1])],
            cwd=ROOT, capture_output=True, text=True, timeout=args.duration + 600,
        )  # fmt: skip
        bec.send_signal(signal.SIGTERM)
        be_out, _ = bec.communicate(timeout=120)
        if rtc.returncode != 0:
            raise SystemExit(f"RT client failed: {rtc.stderr[-3000:]}")
        res = json.loads(rtc.stdout.strip().splitlines()[-1])
        res.update(json.loads(be_out.strip().splitlines()[-1]))
        return res
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=120)
        except subprocess.TimeoutExpired:
            srv.kill()


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="cuda", help="cuda|hip|sim")
    ap.add_argument("--packages", type=Path, help="zoo packages (default on sim: built here)")
    ap.add_argument("--rt", default="vgg19")
    ap.add_argument("--be", default="resnet152")
    ap.add_argument("--policy", default="reset+poll")
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--rate", type=float, default=100.0, help="RT requests per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of RT arrivals")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds not reported")
    ap.add_argument("--sim-cus", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    # client-process mode (started by the server phase)
    ap.add_argument("--client", choices=("rt", "be"), help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--pkg", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.client:
        client_main(args)
        return 0

    from reef_rocm.bench.meta import write_result
    from reef_rocm.gpu import open_device

    with tempfile.TemporaryDirectory(prefix="reef-bench-server-") as td:
        tmp = Path(td)
        os.chmod(tmp, 0o700)
        dev_opts = {"compute_units": args.sim_cus} if args.backend == "sim" else {}
        if args.packages is None:
            if args.backend != "sim":
                ap.error("--packages is needed on a GPU")
            args.packages, args.rt, args.be = sim_packages(tmp / "packages", args.sim_cus)
        dev = open_device(args.backend, args.gpu, **dev_opts)
        rt_pkg = find(args.packages, args.rt, dev.info.arch)
        be_pkg = find(args.packages, args.be, dev.info.arch)
        print(f"in-process: {args.rt} RT at {args.rate:g}/s vs {args.be} BE, {args.duration:g} s",
              file=sys.stderr)  # fmt: skip
        inproc = run_in_process(dev, rt_pkg, be_pkg, args)
        dev.close()  # the server process opens the GPU next
        print(f"  RT p50 {inproc['p50_us']:.0f} us p99 {inproc['p99_us']:.0f} us; "
              "through the server...", file=sys.stderr)  # fmt: skip
        served = run_through_server(args.packages, (args.rt, rt_pkg), (args.be, be_pkg), args,
                                    tmp)  # fmt: skip
        over99 = served["p99_us"] - inproc["p99_us"]
        over50 = served["p50_us"] - inproc["p50_us"]
        print(f"  RT p50 {served['p50_us']:.0f} us p99 {served['p99_us']:.0f} us; server adds "
              f"{over50:.0f} us p50, {over99:.0f} us p99 (goal <= {GOAL_US:.0f})",
              file=sys.stderr)  # fmt: skip
        doc = {
            "benchmark": "server_overhead",
            "workload": {
                "name": "DISB-A",
                "rt": args.rt,
                "be": args.be,
                "rt_rate_per_s": args.rate,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "batch": 1,
                "policy": args.policy,
            },  # fmt: skip
            "clock": "host perf_counter, arrival to outputs in hand",
            "in_process": inproc,
            "server": served,
            "overhead_p50_us": over50,
            "overhead_p99_us": over99,
            "goal_p99_us": GOAL_US,
            "goal_met": None if args.backend == "sim" else over99 <= GOAL_US,
            "transport": "Unix socket + POSIX shared memory, separate RT and BE client processes",
        }
        if args.backend == "sim":
            doc["note"] = ("simulated GPU: latencies are the host cost of running the model of "
                           "a GPU, not GPU times; the goal applies to real GPUs only")  # fmt: skip
        if args.out:
            cmd = "python tools/bench_server.py " + " ".join(sys.argv[1:] if argv is None else argv)
            print(write_result(args.out, doc, device=dev, command=cmd), file=sys.stderr)
        else:
            print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
