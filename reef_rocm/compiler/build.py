"""``compile_model``: model + target -> model package directory (cached by content hash)."""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm import __version__
from reef_rocm.compiler.launch_bounds import plain_blocks_per_sm, with_min_blocks
from reef_rocm.compiler.targets import TargetSpec, parse_target
from reef_rocm.errors import ModelError, UnsupportedError
from reef_rocm.package.manifest import (
    DKP_VARIANTS,
    MANIFEST_FILE,
    PREEMPTIBLE_VARIANTS,
    VARIANTS,
    Buffer,
    LaunchRecord,
    Manifest,
    PreemptLaunch,
    Variant,
    idempotence_violations,
)
from reef_rocm.package.weights import GENERATOR

DEFAULT_SEED = 0
COMPILER_REVISION = 4  # bump when the compiler's output changes for the same inputs


def cache_dir() -> Path:
    return Path(os.environ.get("REEF_CACHE", Path.home() / ".cache" / "reef_rocm"))


def default_package_dir() -> Path:
    return cache_dir() / "packages"


class Progress:
    """One line per step on stderr: '[vgg19 cuda:sm_90] relax pipeline ... 12.3 s'."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.steps: dict[str, float] = {}

    def step(self, what: str, fn: Callable[[], Any]) -> Any:
        t = time.monotonic()
        if self.enabled:
            print(f"[{self.label}] {what} ...", file=sys.stderr, flush=True)
        out = fn()
        dt = time.monotonic() - t
        self.steps[what] = self.steps.get(what, 0.0) + dt
        if self.enabled:
            print(f"[{self.label}] {what} done in {dt:.1f} s", file=sys.stderr, flush=True)
        return out

    def note(self, msg: str) -> None:
        if self.enabled:
            print(f"[{self.label}] {msg}", file=sys.stderr, flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0


# ------------------------------------------------------------------ variants


def _transform_module() -> Any | None:
    try:
        from reef_rocm.compiler import transform
    except ModuleNotFoundError as e:
        if e.name == "reef_rocm.compiler.transform":
            return None
        raise
    return transform


@dataclass(frozen=True)
class VariantRecipe:
    """How one packaged variant is made from the scheduled kernels: the TVM pass that
    makes it (None: the kernels as scheduled) applied to the module of the variant it
    builds on (``after``; None: the scheduled kernels). The pass comes from
    reef_rocm.compiler.transform, called with the compile's poll interval."""

    make_pass: Callable[[Any, int | None], Any] | None
    after: str | None = None


# one row per manifest variant (VARIANTS), in build order: a variant comes after the one
# it builds on. dkp_be is the DKP rewrite of the preemptible kernels (the other order is
# refused by the transform: persistent blocks would miss the flag).
VARIANT_RECIPES: dict[str, VariantRecipe] = {
    "plain": VariantRecipe(None),
    "preemptible": VariantRecipe(lambda t, poll: t.preemptible_pass(poll)),
    "dkp": VariantRecipe(lambda t, poll: t.dkp_pass()),
    "dkp_be": VariantRecipe(lambda t, poll: t.dkp_pass(), after="preemptible"),
}
assert tuple(VARIANT_RECIPES) == VARIANTS, "one recipe per manifest variant, in order"


def available_variants() -> list[str]:
    """plain, and every transformed variant when reef_rocm.compiler.transform imports."""
    if _transform_module() is None:
        return ["plain"]
    return list(VARIANT_RECIPES)


def resolve_variants(requested: str | list[str] | None) -> list[str]:
    """None/"auto": plain plus whatever the transform module provides."""
    avail = available_variants()
    if requested in (None, "auto"):
        return avail
    names = requested.split(",") if isinstance(requested, str) else list(requested)
    names = [n.strip() for n in names if n.strip()]
    for n in names:
        if n not in VARIANTS:
            raise UnsupportedError(f"unknown variant {n!r}; choose from {', '.join(VARIANTS)}")
        if n not in avail:
            raise UnsupportedError(
                f"variant {n!r} needs reef_rocm.compiler.transform, which is not available"
            )
    if "plain" not in names:
        names.insert(0, "plain")
    return [v for v in VARIANTS if v in names]


def _preempt_launches(variant: str, mod: Any, kernels: list[LaunchRecord]) -> None:
    """Give each kernel of a preemptible variant its ``preempt`` record, from the
    transform's ``reef.preemptible`` attribute of its PrimFunc: what the slot counts and
    which launch argument sets the poll interval (matched by name: the host/device split
    need not keep the kernels of one PrimFunc in order)."""
    if variant not in PREEMPTIBLE_VARIANTS:
        return
    t = _transform_module()
    counts = "virtual_blocks" if variant in DKP_VARIANTS else "blocks"
    for k in kernels:
        info = t.preempt_info(mod[k.func])
        reef = {a["name"] for a in k.args if a["kind"] == "reef_param"}
        mine = [i for i, n in enumerate(info["poll_params"]) if n is not None and n in reef]
        if len(mine) > 1:
            raise UnsupportedError(f"{k.name}: takes {len(mine)} poll interval arguments")
        if mine:
            (i,) = mine
            k.preempt = PreemptLaunch(
                slot_counts=counts,
                poll_param=info["poll_params"][i],
                loop_trips=info["loop_trips"][i],
                default_poll_every=int(info["poll_interval"] or 0),
            )
        else:
            k.preempt = PreemptLaunch(slot_counts=counts)


def _dkp_infos(mod: Any) -> dict[str, list[dict[str, Any]]]:
    """PrimFunc name -> its decoded ``reef.dkp`` attribute (transform.dkp_info), for the
    DKP-ready functions of ``mod``: the transform's own record of each kernel's original
    grid, block, virtual block count and parameters."""
    t = _transform_module()
    if t is None:
        return {}
    return {
        gv.name_hint: t.dkp_info(f)
        for gv, f in mod.functions.items()
        if getattr(f, "attrs", None) is not None and t.ATTR_DKP in f.attrs
    }


def _transform_hash() -> str:
    """Hash of the sources that shape the transformed variants (the transform package and
    the launch bounds)."""
    t = _transform_module()
    if t is None or not getattr(t, "__file__", None):
        return "none"
    h = hashlib.sha256()
    for f in sorted(Path(t.__file__).parent.glob("*.py")) + [Path(__file__).with_name(
        "launch_bounds.py"
    )]:  # fmt: skip
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ compile


@dataclass
class CompileResult:
    path: Path
    manifest: Manifest
    cached: bool
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)


def package_name(model_name: str, target: TargetSpec) -> str:
    return f"{model_name}-{target.name.replace(':', '_')}"


def tool_versions() -> dict[str, str]:
    import tvm

    from reef_rocm.compiler.codegen import nvcc_version

    return {
        "reef_rocm": __version__,
        "tvm": str(tvm.__version__),
        "nvcc": nvcc_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "compiler_revision": str(COMPILER_REVISION),
    }


def compile_model(
    model: str,
    target: str,
    out_dir: str | Path | None = None,
    variants: str | list[str] | None = None,
    seed: int = DEFAULT_SEED,
    poll_interval: int | None = None,
    force: bool = False,
    progress: bool = True,
    reference: bool = True,
    tuning_db: str | Path | None = None,
    untuned: bool = False,
) -> CompileResult:
    """Compile ``model`` (zoo name, .onnx, .pt2) for ``target`` into a package directory.

    Kernels with a record in the tuning database (``tuning_db``, else the one shipped for
    the target; ``untuned``: none) get its schedule, the others dlight's.
    Returns at once when a package with the same content hash already exists.
    """
    from reef_rocm.compiler.tune.apply import resolve_tuning

    spec = parse_target(target)  # unsupported targets fail before any work
    names = resolve_variants(variants)
    tuning = resolve_tuning(spec.name, tuning_db, untuned)  # a bad database fails early too
    from reef_rocm.compiler.frontends import load_model

    t_start = time.monotonic()
    src = load_model(model)
    out_root = Path(out_dir) if out_dir is not None else default_package_dir()
    pkg = out_root / package_name(src.name, spec)
    key = hashlib.sha256(
        json.dumps(
            {
                "model": src.content_hash, "target": spec.name, "variants": names, "seed": seed,
                "poll": poll_interval,
                # the transform's source matters only to the variants it makes
                "transform": _transform_hash() if names != ["plain"] else "unused",
                "rev": COMPILER_REVISION, "reference": reference, "reef": __version__,
                "tuning": None if tuning is None else tuning.digest,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()  # fmt: skip
    if not force and (pkg / MANIFEST_FILE).is_file():
        try:
            m = Manifest.load(pkg)
            if m.model.get("package_hash") == key:
                return CompileResult(pkg, m, True, time.monotonic() - t_start)
        except Exception:  # a stale or broken package is rebuilt
            pass

    prog = Progress(f"{src.name} {spec.name}", progress)
    # variants not named by the caller may be skipped if their transform fails on this model
    optional = frozenset(names) if variants in (None, "auto") else frozenset()
    manifest, files = _compile(
        src, spec, names, seed, poll_interval, reference, prog, optional=optional, tuning=tuning
    )
    manifest.model["package_hash"] = key
    # write to a temporary sibling, then swap: a crash never leaves a half package behind
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pkg.name}.", dir=out_root))
    try:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, np.ndarray):
                with open(p, "wb") as f:
                    np.save(f, data, allow_pickle=False)
            else:
                p.write_bytes(data if isinstance(data, bytes) else data.encode())
        manifest.save(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; packages are shared read-only data
        if pkg.exists():
            shutil.rmtree(pkg)
        tmp.rename(pkg)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prog.note(f"package {pkg} ({prog.elapsed:.1f} s)")
    return CompileResult(pkg, manifest, False, time.monotonic() - t_start, prog.steps)


def _compile(
    src: Any, spec: TargetSpec, names: list[str], seed: int, poll: int | None,
    reference: bool, prog: Progress, generate_code: bool = True,
    optional: frozenset[str] = frozenset(), tuning: Any = None,
) -> tuple[Manifest, dict[str, Any]]:  # fmt: skip
    import tvm

    from reef_rocm.compiler.graph import build_plan

    target = tvm.target.Target(spec.tvm_target_dict())
    what = "dlight schedules" if tuning is None else "tuned + dlight schedules"
    plan = prog.step(
        f"relax pipeline (legalize, fuse, {what})",
        lambda: build_plan(src.mod, target, len(src.inputs), [p.name for p in src.params], tuning),
    )
    if tuning is not None:
        prog.note(f"tuned kernels: {', '.join(plan.extra['tuned']) or 'none'}")
    with _VariantBuild(spec, plan, target, poll, prog, generate_code, optional) as vb:
        for name in names:
            vb.build(name)
        manifest = _finish(src, spec, seed, reference, prog, plan, vb.files, vb.variants)
        # how the kernels were scheduled: which PrimFuncs came from which database
        manifest.model["tuning"] = (
            {"database": None, "tuned_kernels": []}
            if tuning is None
            else {**tuning.describe(), "tuned_kernels": plan.extra["tuned"]}
        )
        if vb.skipped:
            manifest.model["skipped_variants"] = vb.skipped
        vb.wait_for_binaries()
    return manifest, vb.files


class _VariantBuild:
    """Builds the variants of one compile: transform (VARIANT_RECIPES), TIR lowering,
    launch records, code generation; nvcc runs in worker threads meanwhile.

    ``files`` (package path -> bytes), ``variants`` (name -> Variant) and ``skipped``
    (variant -> why) are the results; ``close()`` stops the workers.
    """

    def __init__(
        self, spec: TargetSpec, plan: Any, target: Any, poll: int | None, prog: Progress,
        generate_code: bool, optional: frozenset[str],
    ) -> None:  # fmt: skip
        self.spec, self.plan, self.target, self.poll = spec, plan, target, poll
        self.prog, self.generate_code, self.optional = prog, generate_code, optional
        self.files: dict[str, Any] = {}
        self.variants: dict[str, Variant] = {}
        self.skipped: dict[str, str] = {}
        self._pending: dict[str, Future] = {}  # binary path -> nvcc's cubin
        self._modules: dict[str, Any] = {}  # transformed module per variant (recipes reuse)
        self._plain_cuda: tuple[str, Future] | None = None  # plain CUDA source, cubin
        self._plain_blocks: dict[str, int] | None = None
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(len(VARIANTS), os.cpu_count() or 1)))

    def __enter__(self) -> _VariantBuild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def module(self, name: str) -> Any:
        """The scheduled kernels transformed for variant ``name`` (and what it builds on)."""
        if name not in self._modules:
            recipe = VARIANT_RECIPES[name]
            base = self.plan.kernels_mod if recipe.after is None else self.module(recipe.after)
            if recipe.make_pass is None:
                self._modules[name] = base
            else:
                t = _transform_module()
                t.register_lowerings()
                self._modules[name] = recipe.make_pass(t, self.poll)(base)
        return self._modules[name]

    def build(self, name: str) -> None:
        from reef_rocm.compiler.kernels import (
            bind_kernels,
            lower_kernels,
            primfunc_param_dtypes,
            primfunc_param_names,
        )

        prog = self.prog
        try:
            vmod = prog.step(f"{name}: transform", lambda: self.module(name))
            build = prog.step(f"{name}: TIR lowering", lambda: lower_kernels(vmod, self.target))
            kernels = bind_kernels(
                self.plan.calls, build, primfunc_param_names(vmod), primfunc_param_dtypes(vmod),
                _dkp_infos(vmod),
            )  # fmt: skip
            _preempt_launches(name, vmod, kernels)
        except Exception as e:
            if name == "plain" or name not in self.optional:
                raise
            # a variant we were not asked for by name (auto) must not cost the whole package:
            # build without it and say why in the manifest
            msg = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
            prog.note(f"{name}: variant skipped: {msg}")
            self.skipped[name] = msg
            return
        if not self.generate_code:
            self.variants[name] = Variant(name, "", "", kernels)
            return
        self.variants[name] = self._codegen(name, build, kernels)
        prog.note(f"{name}: {len(kernels)} kernels")

    def _codegen(self, name: str, build: Any, kernels: list[LaunchRecord]) -> Variant:
        from reef_rocm.compiler.codegen import codegen, compile_cuda

        spec = self.spec
        co = self.prog.step(
            f"{name}: codegen ({'CUDA source' if spec.kind == 'cuda' else 'LLVM + ld.lld'})",
            lambda: codegen(build.device_mod, build.target, spec.arch, nvcc=False),
        )
        if name != "plain" and spec.kind == "cuda" and self._plain_cuda is not None:
            # keep the plain kernels' blocks per SM: __launch_bounds__(T, plain blocks/SM)
            co = dataclasses.replace(co, source=with_min_blocks(co.source, self._blocks()))
        # sources are large (dlight unrolls: ~40 KB of CUDA per conv kernel) and only read
        # by people and tools, so they are stored gzipped (mtime 0: reproducible bytes)
        src_rel = f"kernels/{name}{co.source_ext}.gz"
        bin_rel = f"kernels/{name}{co.binary_ext}"
        self.files[src_rel] = gzip.compress(co.source.encode(), compresslevel=6, mtime=0)
        if co.binary:
            self.files[bin_rel] = co.binary
        else:  # nvcc runs in a worker while TVM goes on with the next variant / reference
            self._pending[bin_rel] = self._pool.submit(compile_cuda, co.source, spec.arch)
            if name == "plain":
                self._plain_cuda = (co.source, self._pending[bin_rel])
        return Variant(name, bin_rel, src_rel, kernels)

    def _blocks(self) -> dict[str, int]:
        """Resident blocks per SM of each plain kernel (waits for the plain cubin)."""
        if self._plain_blocks is None:
            assert self._plain_cuda is not None
            source, cubin = self._plain_cuda
            self._plain_blocks = plain_blocks_per_sm(cubin.result(), self.spec.arch, source)
        return self._plain_blocks

    def wait_for_binaries(self) -> None:
        for rel, fut in self._pending.items():
            self.files[rel] = self.prog.step(f"nvcc -> {rel} (waiting)", fut.result)


def _finish(
    src: Any, spec: TargetSpec, seed: int, reference: bool, prog: Progress, plan: Any,
    files: dict[str, Any], variants: dict[str, Variant],
) -> Manifest:  # fmt: skip
    buffers, weights_file = _manifest_buffers(src, plan, files)
    ref: dict[str, Any] = {"device": "llvm", "inputs": [], "outputs": []}
    if reference:
        ins, outs = prog.step("CPU reference (TVM llvm, VM)", lambda: reference_io(src, seed))
        for i, a in enumerate(ins):
            files[f"reference/input_{i}.npy"] = a
            ref["inputs"].append(f"reference/input_{i}.npy")
        for i, a in enumerate(outs):
            files[f"reference/output_{i}.npy"] = a
            ref["outputs"].append(f"reference/output_{i}.npy")
    manifest = Manifest(
        model={
            "name": src.name, "kind": src.kind, "content_hash": src.content_hash,
            "input_names": [s.name for s in src.inputs],
        },
        target=spec.as_dict(),
        tools=tool_versions(),
        buffers=buffers,
        inputs=plan.inputs,
        outputs=plan.outputs,
        weights={"generator": GENERATOR, "seed": seed, "file": weights_file},
        variants=variants,
        reference=ref,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip
    manifest.validate()
    bad = idempotence_violations(manifest, "plain")
    if bad:  # by construction this cannot happen; refuse to write a package that breaks it
        raise UnsupportedError(f"{src.name}: kernels not re-runnable: {'; '.join(bad[:5])}")
    return manifest


def _manifest_buffers(
    src: Any, plan: Any, files: dict[str, Any]
) -> tuple[list[Buffer], str | None]:
    """Manifest buffers; stored bytes (user weights, constants) go to weights.bin."""
    specs = {s.name: s for s in src.params}
    blob = bytearray()
    out = []
    for i, b in enumerate(plan.buffers):
        init = None
        data = b.data
        if b.role == "param":
            if src.param_data is not None:
                data = src.param_data[b.name]
            else:
                init = specs[b.name].init
        if data is not None:
            arr = np.ascontiguousarray(data, dtype=b.dtype)
            if list(arr.shape) != list(b.shape):
                raise ModelError(f"{b.name}: data shape {arr.shape} != {b.shape}")
            off = (len(blob) + 255) // 256 * 256
            blob.extend(b"\0" * (off - len(blob)))
            blob.extend(arr.tobytes())
            init = {"kind": "file", "path": "weights.bin", "offset": off}
        out.append(Buffer(i, b.name, b.dtype, list(b.shape), b.nbytes, b.role, init))
    if blob:
        files["weights.bin"] = bytes(blob)
        return out, "weights.bin"
    return out, None


def plan_manifest(
    model: str, target: str, variants: str | list[str] = "plain",
    tuning_db: str | Path | None = None, untuned: bool = False,
) -> Manifest:  # fmt: skip
    """The manifest a compile would write, without code generation, nvcc or the CPU
    reference (seconds instead of minutes): for checks on buffers and kernel order."""
    from reef_rocm.compiler.frontends import load_model
    from reef_rocm.compiler.tune.apply import resolve_tuning

    spec = parse_target(target)
    tuning = resolve_tuning(spec.name, tuning_db, untuned)
    src = load_model(model)
    prog = Progress(f"{src.name} {spec.name}", enabled=False)
    m, _ = _compile(
        src, spec, resolve_variants(variants), DEFAULT_SEED, None, False, prog, False,
        tuning=tuning,
    )  # fmt: skip
    return m


# ------------------------------------------------------------------ CPU reference


def reference_cache_dir() -> Path:
    return cache_dir() / "reference"


def reference_io(src: Any, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Reference input(s) from the seed and the model's output(s) on the CPU (TVM llvm).

    Cached per model content hash and seed: the reference does not depend on the GPU target.
    """
    import tvm

    cdir = (
        reference_cache_dir() / f"{src.name}-{src.content_hash[:16]}-s{seed}-tvm{tvm.__version__}"
    )
    if (cdir / "done").is_file():
        ins = sorted(cdir.glob("input_*.npy"))
        outs = sorted(cdir.glob("output_*.npy"))
        return [np.load(p) for p in ins], [np.load(p) for p in outs]
    inputs = [_gen(seed, f"input:{s.name}", s.shape, s.dtype, s.init) for s in src.inputs]
    params = [materialize_param(src, p, seed) for p in src.params]
    outputs = run_on_cpu(src.mod, inputs + params)
    cdir.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(inputs):
        np.save(cdir / f"input_{i}.npy", a)
    for i, a in enumerate(outputs):
        np.save(cdir / f"output_{i}.npy", a)
    (cdir / "done").write_text("ok\n")
    return inputs, outputs


def _gen(seed: int, name: str, shape: Any, dtype: str, init: dict[str, Any]) -> np.ndarray:
    from reef_rocm.package.weights import generate

    return generate(seed, name, shape, dtype, init)


def materialize_param(src: Any, p: Any, seed: int) -> np.ndarray:
    if src.param_data is not None:
        return np.ascontiguousarray(src.param_data[p.name])
    return _gen(seed, p.name, p.shape, p.dtype, p.init)


def run_on_cpu(mod: Any, args: list[np.ndarray]) -> list[np.ndarray]:
    import tvm
    from tvm import relax

    ex = tvm.compile(mod, target=tvm.target.Target("llvm"))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    res = vm["main"](*[tvm.runtime.tensor(a) for a in args])
    if hasattr(res, "numpy"):
        return [res.numpy()]
    return [r.numpy() for r in res]
