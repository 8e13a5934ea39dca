"""Which model package each workload model runs: a compiled zoo package on a GPU, or on the sim
backend a simulated package whose kernels replay a per-kernel timing profile measured on a GPU
(`reef profile` / `python -m reef_rocm.runtime.bench --profile-dir`)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reef_rocm.bench.disb.workload import WorkloadError

# per-kernel profiles of the zoo measured on the H200 (runtime.bench --profile-dir)
DEFAULT_PROFILES = Path(__file__).resolve().parents[3] / "docs" / "results" / "profiles" / "h200"
# A profile gives each kernel's time, not its loop structure; simulated blocks get this many
# loop trips, the unit of the in-kernel poll interval (reef_poll_every) the scheduler sets, so
# `reset+poll` has poll points to use. An assumption of the model, recorded in the results.
SIM_LOOP_TRIPS = 32


def _target(path: Path) -> dict[str, Any]:
    try:
        t = json.loads((path / "manifest.json").read_text()).get("target", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    return t if isinstance(t, dict) else {}


def find_model_package(root: str | Path, model: str, backend: str, arch: str | None) -> Path:
    """The package for ``model`` under ``root`` (directories named ``<model>-<target>``, as
    `reef compile` writes them) whose manifest target the device loads (backend and arch);
    errors list what is there."""
    from reef_rocm.package.files import find_packages

    paths = find_packages(root)
    mine = [p for p in paths if p.name.startswith(f"{model}-")]
    if not mine:
        have = sorted({p.name for p in paths}) or ["nothing"]
        raise WorkloadError(
            f"no package for model {model!r} in {root} (have: {', '.join(have)}); "
            f"build it with `reef compile {model} --target ...`"
        )
    if backend == "sim":
        return mine[0]
    fits = [
        p for p in mine
        if _target(p).get("backend") == backend and (not arch or _target(p).get("arch") == arch)
    ]  # fmt: skip
    if not fits:
        raise WorkloadError(
            f"package for {model!r} in {root} is for "
            f"{', '.join(str(_target(p).get('name', p.name)) for p in mine)}, "
            f"the device is {backend}:{arch}"
        )
    return fits[0]


def find_profile(root: str | Path, model: str) -> Path:
    """The profile JSON of ``model`` under ``root``: a file whose ``"model"`` field is the model
    or one of its packages (``vgg19-cuda_sm_90``)."""
    root = Path(root)
    candidates = sorted(root.glob("*.json")) if root.is_dir() else []
    for p in candidates:
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        name = str(doc.get("model", "")) if isinstance(doc, dict) else ""
        if name == model or name.startswith(f"{model}-"):
            return p
    raise WorkloadError(
        f"no timing profile for model {model!r} in {root} (the sim backend replays measured "
        "kernel times): on a GPU run `reef profile PACKAGE --out DIR/<model>.json`, or pass "
        "--profiles DIR / --packages DIR of sim packages"
    )


@dataclass(frozen=True)
class SimModel:
    """How the sim replays profiles. ``profile_compute_units``: SMs/CUs of the GPU the profiles
    were measured on (132 for the H200). ``compute_units``: CUs of the simulated GPU. With
    ``max_rounds`` set, each kernel is replayed with at most that many rounds of blocks on the
    simulated CUs (same duration, fewer and longer blocks): the sim then handles about
    ``compute_units * max_rounds`` blocks per kernel instead of up to millions per inference
    (Inception-v3's profile has 2 million). ``max_rounds=None`` and equal CU counts replay the
    profiled grids exactly. Coarse blocks make waiting for running blocks (``wait``, ``reset``)
    cost more than on the GPU; poll points (``reset+poll``) are placed per loop trip and are
    less affected."""

    arch: str = "sm_90"
    compute_units: int = 132
    profile_compute_units: int = 132
    max_rounds: int | None = None

    @property
    def exact(self) -> bool:
        return self.max_rounds is None and self.compute_units == self.profile_compute_units

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exact": self.exact, "loop_trips": SIM_LOOP_TRIPS}


def coarsen_profile(profile: dict[str, Any], sim: SimModel) -> dict[str, Any]:
    """The profile with every kernel's grid re-cut for ``sim`` (durations unchanged). A kernel
    of ``r`` rounds on the profiled GPU (``ceil(blocks / profile CUs)``, one block per CU as the
    sim replay assumes) gets ``min(r, max_rounds)`` full rounds on the simulated CUs; a kernel
    of less than one round keeps its fraction of the GPU."""
    if sim.exact:
        return profile
    out = []
    for k in profile["kernels"]:
        blocks = math.prod(int(x) for x in k.get("grid", (1,)))
        rounds = math.ceil(blocks / sim.profile_compute_units)
        if rounds <= 1:
            n = max(1, math.ceil(blocks * sim.compute_units / sim.profile_compute_units))
        else:
            n = sim.compute_units * min(rounds, sim.max_rounds or rounds)
        out.append({**k, "grid": [n, 1, 1], "profiled_grid": k.get("grid")})
    return {**profile, "kernels": out}


def sim_package(cache: Path, model: str, profile_path: Path, sim: SimModel) -> Path:
    """A simulated package for ``model`` whose kernels replay ``profile_path`` as ``sim`` says;
    timing only, no functional effects (a benchmark needs the timeline, not the numbers).
    Built once into ``cache``."""
    from reef_rocm.gpu.sim.packages import sim_package_from_profile

    text = profile_path.read_text()
    try:
        profile = coarsen_profile(json.loads(text), sim)
    except (ValueError, KeyError, TypeError) as e:
        raise WorkloadError(f"profile {profile_path}: {e}") from None
    key = hashlib.sha256(f"{sim.as_dict()}/{text}".encode()).hexdigest()[:12]
    out = cache / f"{model}-sim-{key}"
    if (out / "manifest.json").exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    try:
        return Path(
            sim_package_from_profile(
                out, profile, name=model, arch=sim.arch, compute_units=sim.compute_units,
                functional=False, loop_trips=SIM_LOOP_TRIPS, poll_arg=True,
            )
        )  # fmt: skip
    except (ValueError, KeyError) as e:
        raise WorkloadError(f"profile {profile_path}: {e}") from None


# A synthetic BE model for the kernel-length sweep (Fig. 12): identical kernels of one length,
# each two full rounds of blocks on the GPU, about this much work per inference.
SYNTHETIC_BE_WORK_US = 20_000.0


def synthetic_be_name(kernel_us: float) -> str:
    return f"synthetic-be-{kernel_us:g}us"


def synthetic_be_package(cache: Path, kernel_us: float, sim: SimModel) -> Path:
    """A simulated BE model of ``ceil(SYNTHETIC_BE_WORK_US / kernel_us)`` kernels that each run
    ``kernel_us`` alone on the sim (grid: 2 blocks per CU, so a running kernel occupies the whole
    GPU and a preemption meets blocks of that length)."""
    from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package

    if kernel_us <= 0:
        raise WorkloadError(f"BE kernel length must be > 0 us, got {kernel_us}")
    name = synthetic_be_name(kernel_us)
    arch, compute_units = sim.arch, sim.compute_units
    out = cache / f"{name}-{arch}-{compute_units}-{SIM_LOOP_TRIPS}"
    if (out / "manifest.json").exists():
        return out
    n = max(1, math.ceil(SYNTHETIC_BE_WORK_US / kernel_us))
    plans = [
        SimKernelPlan(f"be_{i}", grid=2 * compute_units, block=256, duration_us=kernel_us,
                      blocks_per_cu=1, loop_trips=SIM_LOOP_TRIPS)
        for i in range(n)
    ]  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    return Path(build_sim_package(out, name, plans, functional=False, arch=arch,
                                  compute_units=compute_units, weights=False,
                                  poll_arg=True))  # fmt: skip
