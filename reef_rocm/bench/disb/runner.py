"""Run DISB workloads under every scheduling policy, one after another in one process.

For each workload: arrivals are generated once (seeded) and replayed for every policy; the
``rt-only`` run (RT clients alone) and a BE-alone run (BE clients alone) are the references the
comparisons divide by; then each selected policy runs the whole workload. A scheduler is built
per policy run (the policy is part of its options); on the sim backend each run also gets a
fresh simulated device, so every run starts at virtual time 0 with an idle GPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reef_rocm.bench.disb import arrivals as arr
from reef_rocm.bench.disb import metrics as met
from reef_rocm.bench.disb.packages import (
    DEFAULT_PROFILES,
    SimModel,
    find_model_package,
    find_profile,
    sim_package,
    synthetic_be_name,
    synthetic_be_package,
)
from reef_rocm.bench.disb.progress import Console
from reef_rocm.bench.disb.workload import Client, Load, Workload, WorkloadError, resolve
from reef_rocm.errors import UnsupportedError

# Display order; a device offers a subset (reef_rocm.sched.policy.available_policies).
POLICY_ORDER = (
    "rt-only",
    "sequential",
    "streams",
    "priority-streams",
    "wait",
    "reset",
    "reset+poll",
    "reset+kill",
    "reset+poll+dkp",
)
REFERENCE_POLICY = "rt-only"
# Policies whose BE device queue is capped (what --sweep-cap varies).
CAPPED_POLICIES = ("wait", "reset", "reset+poll", "reset+kill")
# RT offered load above which a workload counts as overloading the GPU (RT alone).
OVERLOAD = 0.9
AUTO_RT_BUSY_TARGET = 0.5
# On the sim (deterministic; ~50k simulated blocks per wall second on one core) the workloads'
# defaults would take minutes per policy; without --duration/--warmup it runs this long.
SIM_DURATION_S = 0.5
SIM_WARMUP_S = 0.1
# Default sim model: a coarse replay (packages.SimModel): 16 simulated CUs, at most 4 rounds of
# blocks per kernel; --sim-exact replays the profiled grids on 132 SMs (much slower).
SIM_COMPUTE_UNITS = 16
SIM_MAX_ROUNDS: int | None = 4


@dataclass
class DisbOptions:
    workloads: str = "A"
    policies: list[str] | None = None  # None: every policy the device supports
    duration_s: float | None = None  # None: each workload's own
    warmup_s: float | None = None
    seed: int | None = None
    backend: str = "auto"
    packages: str | None = None
    profiles: str | None = None
    out: str = "disb-results"
    cap_us: float | None = None  # None: the scheduler's default device-queue cap
    sweep_cap: list[float] = field(default_factory=list)
    sweep_policies: list[str] | None = None
    sweep_be_kernel_us: list[float] = field(default_factory=list)  # Fig. 12, sim only
    rt_scale: str | None = None  # None, "auto" or a factor ("0.5")
    be_alone_policy: str = "streams"
    # "preloaded": every client's inputs are uploaded once before a run and requests carry
    # none (REEF's registered blobs: no transfer between an RT arrival and its first kernel);
    # "per-request": each request copies its inputs to the GPU on its own path
    inputs: str = "preloaded"
    # DKP build of the workload's models for the +dkp policies (SchedOptions.dkp_build);
    # None: those policies are skipped
    dkp_build: str | None = None
    rt_graphs: bool = False  # RT inferences as one launch graph each (SchedOptions.rt_graphs)
    sim_arch: str = "sm_90"  # the H200's architecture model (cuda's capabilities)
    sim_compute_units: int = SIM_COMPUTE_UNITS
    sim_max_rounds: int | None = SIM_MAX_ROUNDS
    sim_profile_compute_units: int = 132  # SMs of the H200 the committed profiles come from
    plots: bool = True
    progress_bar: bool | None = None

    def __post_init__(self) -> None:
        if self.inputs not in ("preloaded", "per-request"):
            raise ValueError(f"inputs must be 'preloaded' or 'per-request', got {self.inputs!r}")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _sched() -> Any:
    try:
        import reef_rocm.sched as sched
        from reef_rocm.sched.policy import available_policies
    except ImportError as e:
        raise UnsupportedError(
            f"reef bench disb needs the scheduler (reef_rocm.sched), which is not importable: {e}"
        ) from None
    return sched, available_policies


def _padding_policies() -> set[str]:
    """Names of the registered policies that pad (they need --dkp-build)."""
    from reef_rocm.sched.policy import all_policies

    return {name for name, p in all_policies().items() if p.pads}


class DisbBench:
    """One `reef bench disb` invocation: device, packages, runs, results document."""

    def __init__(self, options: DisbOptions) -> None:
        self.options = options
        self.simulated = options.backend == "sim"
        self.sim_model = SimModel(
            options.sim_arch,
            options.sim_compute_units,
            options.sim_profile_compute_units,
            options.sim_max_rounds,
        )
        duration, warmup = options.duration_s, options.warmup_s
        if self.simulated:
            duration = SIM_DURATION_S if duration is None else duration
            warmup = SIM_WARMUP_S if warmup is None else warmup
        self.workloads = [w.with_timing(duration, warmup) for w in resolve(options.workloads)]
        if options.seed is not None:
            from dataclasses import replace

            self.workloads = [replace(w, seed=options.seed) for w in self.workloads]
        if options.sweep_be_kernel_us and not self.simulated:
            raise UnsupportedError(
                "--sweep-be-kernel-us needs BE models made of kernels of chosen lengths; they "
                "exist as simulated packages only (use --backend sim); on a GPU, compile models "
                "with the kernel lengths you want and run them as a custom workload"
            )
        self._sched, available = _sched()
        self._device = None if self.simulated else self._open_device()
        probe = self._open_device() if self.simulated else self._device
        self.device_info = probe.info
        self.capabilities = probe.capabilities
        self._meta_device = probe
        self.available = self._order(list(available(self.capabilities)))
        self.policies, self.skipped = self._select(options.policies)
        self.console: Console | None = None
        self.packages: dict[str, Path] = {}
        self.notes: list[str] = []
        self._be_alone: dict[tuple, dict[str, Any]] = {}

    # ---- setup -------------------------------------------------------------------------------

    def _open_device(self) -> Any:
        from reef_rocm.gpu import open_device

        if self.options.backend == "sim":
            return open_device(
                "sim", arch=self.sim_model.arch, compute_units=self.sim_model.compute_units
            )
        return open_device(self.options.backend)

    @staticmethod
    def _order(names: list[str]) -> list[str]:
        known = [p for p in POLICY_ORDER if p in names]
        return known + [p for p in names if p not in POLICY_ORDER]

    def _select(self, wanted: list[str] | None) -> tuple[list[str], dict[str, str]]:
        skipped: dict[str, str] = {}
        if wanted is None:
            chosen = list(self.available)
        else:
            unknown = [p for p in wanted if p not in POLICY_ORDER and p not in self.available]
            if unknown:
                raise UnsupportedError(
                    f"unknown policy {unknown[0]!r}; known: {', '.join(POLICY_ORDER)}"
                    + (f"; this device: {', '.join(self.available)}" if self.available else "")
                )
            chosen = []
            for p in wanted:
                if p in self.available:
                    chosen.append(p)
                else:
                    skipped[p] = (
                        f"not supported by {self.device_info.name} (capability level "
                        f"{self.capabilities.level.name})"
                    )
            chosen = self._order(chosen)
        if not self.options.dkp_build:
            pads = _padding_policies()
            for p in [p for p in chosen if p in pads]:
                chosen.remove(p)
                skipped[p] = "needs a DKP build of the models (--dkp-build DIR)"
        for p in POLICY_ORDER:
            if p not in self.available and p not in skipped and wanted is None:
                skipped[p] = (
                    f"not supported by {self.device_info.name} (capability level "
                    f"{self.capabilities.level.name})"
                )
        if REFERENCE_POLICY not in self.available:
            raise UnsupportedError(f"the scheduler offers no {REFERENCE_POLICY!r} policy here")
        if not chosen:
            raise UnsupportedError("none of the requested policies runs on this device")
        return chosen, skipped

    def _resolve_packages(self) -> None:
        models = sorted({m for w in self.workloads for m in w.models})
        opts = self.options
        info = self.device_info
        for m in models:
            if self.simulated and not opts.packages:
                profiles = Path(opts.profiles) if opts.profiles else DEFAULT_PROFILES
                cache = Path(opts.out) / "sim-packages"
                self.packages[m] = sim_package(cache, m, find_profile(profiles, m), self.sim_model)
            elif opts.packages:
                self.packages[m] = find_model_package(opts.packages, m, info.backend, info.arch)
            else:
                raise WorkloadError(
                    f"--packages DIR is required on {info.backend} (compiled zoo packages, "
                    "e.g. .carry/packages)"
                )

    # ---- runs --------------------------------------------------------------------------------

    def _run(
        self, w: Workload, policy: str, clients: tuple[Client, ...],
        arrivals: dict[str, list[float] | None], cap_us: float | None,
    ) -> tuple[dict[str, Any], float]:  # fmt: skip
        sched = self._sched
        dev = self._open_device() if self.simulated else self._device
        opts: dict[str, Any] = {"policy": policy, "trace": False,
                                "rt_graphs": self.options.rt_graphs}  # fmt: skip
        if self.options.dkp_build:
            opts["dkp_build"] = self.options.dkp_build
        if cap_us is not None:
            opts["device_queue_cap_us"] = cap_us
        t0 = time.monotonic()
        padding = None
        try:
            with sched.Scheduler(dev, sched.SchedOptions(**opts)) as s:
                specs = []
                for c in clients:
                    h = s.load(str(self.packages[c.model]), priority=c.priority, client=c.name)
                    specs.append(sched.LoadSpec(
                        h, arrivals_us=arrivals[c.name], preload=self.options.inputs == "preloaded"
                    ))  # fmt: skip
                if self.simulated:
                    # start the run on a whole microsecond of the sim's ns clock: with whole-us
                    # arrivals every arrival instant is then exact (no float rounding between
                    # run origin + arrival and the integer-ns clock)
                    dev.run_until(math.ceil(dev.now_us))
                # run_load's duration is the whole run, warm-up included; requests that
                # arrived in the warm-up are not reported
                run = s.run_load(
                    specs,
                    duration_us=(w.warmup_s + w.duration_s) * 1e6,
                    warmup_us=w.warmup_s * 1e6,
                )
                pad = getattr(getattr(s, "engine", None), "padder", None)
                if pad is not None:  # why DKP did or did not help: what the padder did
                    padding = pad.stats.as_dict()
        finally:
            if self.simulated:
                dev.close()
        window = met.Window(w.warmup_s * 1e6, (w.warmup_s + w.duration_s) * 1e6)
        table = {c.name: (c.priority, c.model) for c in clients}
        m = met.run_metrics(run, window, table)
        m["policy"] = policy
        m["device_queue_cap_us"] = cap_us
        if padding is not None:
            m["padding"] = padding
        m["wall_s"] = time.monotonic() - t0
        return m, m["wall_s"]

    def _step(self, label: str, *args: Any) -> dict[str, Any]:
        assert self.console is not None
        self.console.start(label)
        m, secs = self._run(*args)
        self.console.step(label, secs)
        return m

    def run_workload(self, w: Workload) -> dict[str, Any]:
        arrivals = arr.workload_arrivals(w)
        cap = self.options.cap_us
        res: dict[str, Any] = {
            "workload": w.as_dict(),
            "arrivals": {k: (None if v is None else len(v)) for k, v in arrivals.items()},
            "policies": {},
            "skipped_policies": dict(self.skipped),
        }
        rt_only = self._step(f"{w.name} {REFERENCE_POLICY}", w, REFERENCE_POLICY,
                             w.rt_clients, arrivals, cap)  # fmt: skip
        be_alone = None
        if w.be_clients:
            be_pol = self.options.be_alone_policy
            if be_pol not in self.available:
                be_pol = next(p for p in self.available if p != REFERENCE_POLICY)
            # the BE-alone reference depends on the BE clients only: C, D, E and the scaled
            # variants share one run (and A, B another)
            key = (tuple(w.be_clients), w.duration_s, w.warmup_s, w.seed, cap, be_pol)
            if key not in self._be_alone:
                m = self._step(f"{w.name} BE alone ({be_pol})", w, be_pol, w.be_clients,
                               arrivals, cap)  # fmt: skip
                m["policy"] = f"be-alone ({be_pol})"
                m["measured_in"] = w.name
                self._be_alone[key] = m
            be_alone = self._be_alone[key]
        refs = met.references(rt_only, be_alone)
        res["references"] = refs.as_dict()
        res["be_alone"] = be_alone
        res["offered_rt_load"] = offered_rt_load(w, rt_only)
        # a closed-loop RT client keeps the GPU busy by design; only open-loop rates overload
        res["overloaded"] = res["offered_rt_load"] > OVERLOAD and all(
            c.load.open_loop for c in w.rt_clients
        )
        for p in self.policies:
            m = rt_only if p == REFERENCE_POLICY else self._step(
                f"{w.name} {p}", w, p, w.clients, arrivals, cap
            )  # fmt: skip
            m["compare"] = met.compare(m, refs)
            res["policies"][p] = m
        if REFERENCE_POLICY not in res["policies"]:
            rt_only["compare"] = met.compare(rt_only, refs)
            res["policies"][REFERENCE_POLICY] = rt_only  # the reference is always reported
        sweep = []
        for c in self.options.sweep_cap:
            for p in self._sweep_policies():
                m = self._step(f"{w.name} {p} cap {c:g} us", w, p, w.clients, arrivals, c)
                m["compare"] = met.compare(m, refs)
                sweep.append(m)
        res["cap_sweep"] = sweep
        res["kernel_length_sweep"] = self._kernel_length_sweep(w, arrivals, refs)
        return res

    def _kernel_length_sweep(
        self, w: Workload, arrivals: dict[str, list[float] | None], refs: met.References
    ) -> list[dict[str, Any]]:
        """The workload's RT clients against one synthetic BE model per kernel length."""
        out = []
        cache = Path(self.options.out) / "sim-packages"
        for us in self.options.sweep_be_kernel_us:
            model = synthetic_be_name(us)
            if model not in self.packages:
                self.packages[model] = synthetic_be_package(cache, us, self.sim_model)
            be = Client(f"be-{model}", model, "be", Load("closed"))
            clients = (*w.rt_clients, be)
            arr_k = {**arrivals, be.name: None}
            for p in self._kernel_sweep_policies():
                m = self._step(f"{w.name} {p} BE kernels {us:g} us", w, p, clients, arr_k,
                               self.options.cap_us)  # fmt: skip
                m["be_kernel_us"] = us
                m["compare"] = met.compare(m, refs)
                out.append(m)
        return out

    def _kernel_sweep_policies(self) -> list[str]:
        if self.options.sweep_policies:
            return [p for p in self.options.sweep_policies if p in self.available]
        return [p for p in self.available if p in CAPPED_POLICIES] or self._sweep_policies()

    def _sweep_policies(self) -> list[str]:
        if self.options.sweep_policies:
            return [p for p in self.options.sweep_policies if p in self.available]
        for p in ("reset+poll", "reset", "wait"):
            if p in self.available:
                return [p]
        return []

    def _scaled_variant(self, w: Workload, res: dict[str, Any]) -> Workload | None:
        scale = self.options.rt_scale
        if scale is None or not any(c.load.open_loop for c in w.rt_clients):
            return None
        if scale == "auto":
            if not res["overloaded"]:
                return None
            return w.with_rt_scale(AUTO_RT_BUSY_TARGET / res["offered_rt_load"])
        return w.with_rt_scale(float(scale))

    def _runs_for(self, w: Workload, be_alone: bool = False) -> int:
        n = len([p for p in self.policies if p != REFERENCE_POLICY]) + 1
        n += len(self.options.sweep_cap) * len(self._sweep_policies())
        n += len(self.options.sweep_be_kernel_us) * len(self._kernel_sweep_policies())
        return n + (1 if be_alone and w.be_clients else 0)

    def _planned_runs(self) -> int:
        n = len({tuple(w.be_clients) for w in self.workloads if w.be_clients})  # BE alone
        for w in self.workloads:
            n += self._runs_for(w)
            if self.options.rt_scale not in (None, "auto") and any(
                c.load.open_loop for c in w.rt_clients
            ):
                n += self._runs_for(w)
        return n

    def run(self) -> dict[str, Any]:
        self._resolve_packages()
        total = self._planned_runs()
        self.console = Console(self.simulated, total, bar=self.options.progress_bar)
        con = self.console
        load_s = total * max(w.warmup_s + w.duration_s for w in self.workloads)
        names = ", ".join(w.name for w in self.workloads)
        con.say(
            f"DISB on {self.device_info.name}: workloads {names}; policies "
            f"{', '.join(self.policies)}; {total} runs, at most {load_s:.0f} s of offered load "
            "plus model loading"
        )
        for p, why in self.skipped.items():
            con.say(f"skipping {p}: {why}")
        results = []
        try:
            for w in self.workloads:
                r = self.run_workload(w)
                results.append(r)
                if r["overloaded"]:
                    con.say(
                        f"{w.name}: RT alone overloads the GPU (offered RT load "
                        f"{r['offered_rt_load']:.0%} of the GPU = RT rate x RT-alone service "
                        "time); the numbers as specified are reported, see the scaled variant"
                        if self.options.rt_scale else
                        f"{w.name}: RT alone overloads the GPU (offered RT load "
                        f"{r['offered_rt_load']:.0%}); add --rt-scale auto for a variant the "
                        "GPU can carry"
                    )  # fmt: skip
                v = self._scaled_variant(w, r)
                if v is not None:
                    if self.options.rt_scale == "auto":
                        con.add(self._runs_for(v))
                    results.append(self.run_workload(v))
        finally:
            con.close()
        return self.document(results)

    def document(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        info = self.device_info
        return {
            "benchmark": "disb",
            "simulated": self.simulated,
            "device": {
                "name": info.name,
                "backend": info.backend,
                "arch": info.arch,
                "capabilities": self.capabilities.as_dict(),
            },
            "config": {
                **self.options.as_dict(),
                "policies_run": self.policies,
                "policies_available": self.available,
                "packages": {m: str(p) for m, p in self.packages.items()},
                "reference_policy": REFERENCE_POLICY,
                "overload_threshold": OVERLOAD,
                "auto_rt_busy_target": AUTO_RT_BUSY_TARGET,
                **({"sim_model": self.sim_model.as_dict()} if self.simulated else {}),
            },
            "definitions": met.__doc__.strip(),
            "workloads": results,
            "notes": self.notes,
        }

    def close(self) -> None:
        for d in {id(x): x for x in (self._device, self._meta_device) if x is not None}.values():
            d.close()
        self._device = self._meta_device = None


def offered_rt_load(w: Workload, rt_only: dict[str, Any]) -> float:
    """Fraction of the GPU the RT clients ask for: sum of rate x RT-alone service time per RT
    client (a closed-loop RT client asks for all of it)."""
    total = 0.0
    for c in w.rt_clients:
        rate = arr.offered_rate(c)
        if rate is None:
            return 1.0 if not c.load.open_loop else total
        service = rt_only["rt"].get(c.model, {}).get("service_mean_us")
        if service:
            total += rate * service / 1e6
    return total
