"""The model package manifest: what a compiled model is, as plain data (no TVM, no GPU).

A package is a directory holding ``manifest.json`` plus the files it names (kernel source,
code objects, reference tensors, optional stored weights). The compiler writes it; the runtime,
the code-object tools and the scheduler read it. The format is documented in
docs/package_format.md; bump ``SCHEMA_VERSION`` on any incompatible change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reef_rocm.errors import PackageError

SCHEMA_NAME = "reef-model-package"
# 2: dkp-variant kernels carry ``dkp`` (virtual blocks, original grid, param roles), their
# ``grid`` is a valid default launch instead of 0, and reef_param arguments carry a dtype
# 3: the dkp_be variant; preemptible kernels carry ``preempt`` (what the completion slot
# counts, the reef_poll_every launch argument); kernels record ``loads``
SCHEMA_VERSION = 3
MANIFEST_FILE = "manifest.json"

ROLES = ("input", "output", "param", "const", "intermediate")
ARG_KINDS = ("buffer", "scalar", "preempt_flag", "completion_slot", "reef_param")
VARIANTS = ("plain", "preemptible", "dkp", "dkp_be")
# variants whose kernels take the preempt flag and a completion slot / run virtual blocks
PREEMPTIBLE_VARIANTS = ("preemptible", "dkp_be")
DKP_VARIANTS = ("dkp", "dkp_be")
# what a preemptible kernel's completion slot counts: blocks of its launch grid, or (DKP)
# the virtual blocks [vblock_begin, vblock_begin + vblock_count) of the launch
SLOT_COUNTS = ("blocks", "virtual_blocks")
# what each scalar parameter of a DKP-ready kernel means (docs/transform.md, "DKP-ready"):
# run virtual blocks [vblock_begin, vblock_begin + vblock_count) on grid_blocks physical blocks
DKP_ROLES = ("vblock_begin", "vblock_count", "grid_blocks")

DTYPE_BYTES = {
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
    "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8,
    "bool": 1,
}  # fmt: skip


@dataclass
class Buffer:
    """One device allocation. Views (reshapes) share their base buffer's id."""

    id: int
    name: str
    dtype: str
    shape: list[int]
    bytes: int
    role: str  # one of ROLES
    # params/consts: how its contents are made. {"kind": "uniform", "bound": b} and
    # {"kind": "const", "value": v} come from the seeded generator; {"kind": "file", "path":
    # p, "offset": o} are stored bytes (user-supplied weights, constants).
    init: dict[str, Any] | None = None


@dataclass
class DkpLaunch:
    """What a DKP runtime needs to launch one kernel of the dkp variant.

    The kernel runs virtual blocks ``[vblock_begin, vblock_begin + vblock_count)`` of the
    original grid (flattened, x fastest) on a 1-D grid of ``grid_blocks`` physical blocks of
    shape ``block``; ``params`` names the kernel's scalar parameter for each role (the
    transform suffixes them ``_i`` for the i-th kernel of a PrimFunc, so names alone do not
    say the role).
    """

    virtual_blocks: int  # blocks of the original launch: grid[0] * grid[1] * grid[2]
    grid: list[int]  # the original (plain) grid
    block: list[int]  # threads per block, as launched
    params: dict[str, str]  # reef_ parameter name -> role (one of DKP_ROLES)

    def param(self, role: str) -> str:
        """The kernel parameter that plays ``role``."""
        for name, r in self.params.items():
            if r == role:
                return name
        raise PackageError(f"dkp launch has no {role!r} parameter")


@dataclass
class PreemptLaunch:
    """What a scheduler needs to launch one kernel of a preemptible variant.

    The kernel adds 1 to its completion slot per finished block (``slot_counts``:
    "blocks" of the launch grid, or "virtual_blocks" for the dkp_be variant); a block that
    saw the preempt flag does nothing more and does not count. With ``poll_param`` the
    kernel also polls the flag inside its long loops, every N iterations, N the int32
    launch argument ``poll_param`` (0 = only at block start); ``loop_trips`` iterations of
    those loops run per block, so N = loop_trips * target_us / block_us polls about every
    target_us. Without ``poll_param`` (no loop to poll) the check is at block start only.
    """

    slot_counts: str  # one of SLOT_COUNTS
    poll_param: str | None = None  # reef_ parameter name of the poll interval, or None
    loop_trips: int | None = 0  # iterations of the polled loops per block (None: unknown)
    default_poll_every: int = 0  # the compile-time --poll-interval (0 = none given)


@dataclass
class LaunchRecord:
    """One device kernel launch, in execution order."""

    name: str  # symbol in the code object
    func: str  # the TIR PrimFunc it came from (one PrimFunc may hold several kernels)
    grid: list[int]
    block: list[int]
    shared_mem: int  # dynamic shared memory (LDS) bytes
    args: list[dict[str, Any]]  # {"kind": ARG_KINDS[i], ...}
    # buffer ids this kernel stores to (from the kernel's TIR); what the idempotence check uses
    writes: list[int] = field(default_factory=list)
    # launch values given by a kernel parameter instead of a constant (the DKP variant's
    # physical grid): {"blockIdx.x": "reef_grid_blocks"}; the matching grid entry is the
    # default value (the original block count), so grid is always a launchable shape
    launch_params: dict[str, str] = field(default_factory=dict)
    # dkp variants only: virtual blocks, original grid and the roles of the reef_ params
    dkp: DkpLaunch | None = None
    # buffer ids this kernel loads from (from the kernel's TIR, atomics included); None in
    # records made by hand without it: then every buffer argument not written counts as read
    loads: list[int] | None = None
    # preemptible variants only: what the completion slot counts, the poll interval argument
    preempt: PreemptLaunch | None = None

    def buffer_args(self) -> list[int]:
        return [a["id"] for a in self.args if a["kind"] == "buffer"]

    def reads(self) -> list[int]:
        if self.loads is not None:
            return list(self.loads)
        w = set(self.writes)
        return [i for i in dict.fromkeys(self.buffer_args()) if i not in w]

    def reef_defaults(self) -> dict[str, int]:
        """Values of every reef_ launch argument for the default launch: the DKP defaults
        (``dkp_defaults``) and the compile-time poll interval."""
        out = self.dkp_defaults()
        if self.preempt is not None and self.preempt.poll_param is not None:
            out[self.preempt.poll_param] = self.preempt.default_poll_every
        return out

    def dkp_defaults(self) -> dict[str, int]:
        """Values of the DKP parameters for the default launch (``grid``/``block`` as
        recorded): every virtual block once, i.e. what the plain kernel computes."""
        if self.dkp is None:
            return {}
        dims = {f"blockIdx.{d}": g for d, g in zip("xyz", self.grid, strict=True)}
        dims.update({f"threadIdx.{d}": b for d, b in zip("xyz", self.block, strict=True)})
        out = {
            self.dkp.param("vblock_begin"): 0,
            self.dkp.param("vblock_count"): self.dkp.virtual_blocks,
        }
        # a launch dimension given by a parameter takes the value the launch uses
        for dim, name in self.launch_params.items():
            out[name] = dims[dim]
        return out


@dataclass
class Variant:
    """One build of the kernels: plain, preemptible (flag + completion slot) or dkp."""

    name: str
    binary: str  # path (relative to the package) of the .cubin / .hsaco
    source: str  # kernel source that was compiled (.cu), or LLVM IR (.ll) for ROCm
    kernels: list[LaunchRecord]


@dataclass
class Manifest:
    model: dict[str, Any]  # name, source kind, content hash, input names
    target: dict[str, Any]  # name ("cuda:sm_90"), backend ("cuda"|"hip"), arch, tvm target
    tools: dict[str, str]
    buffers: list[Buffer]
    inputs: list[int]
    outputs: list[int]
    weights: dict[str, Any]  # {"generator": "...", "seed": n, "file": path or None}
    variants: dict[str, Variant]
    reference: dict[str, Any]  # {"inputs": [paths], "outputs": [paths], "device": "llvm"}
    created: str = ""
    schema: str = SCHEMA_NAME
    version: int = SCHEMA_VERSION

    # ---- queries ----
    def buffer(self, bid: int) -> Buffer:
        return self.buffers[bid]

    def variant(self, name: str = "plain") -> Variant:
        try:
            return self.variants[name]
        except KeyError:
            raise PackageError(
                f"package has no {name!r} variant (has: {', '.join(self.variants)})"
            ) from None

    def params(self) -> list[Buffer]:
        return [b for b in self.buffers if b.role in ("param", "const")]

    # ---- (de)serialisation ----
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"schema": d.pop("schema"), "version": d.pop("version"), **d}
        return d

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / MANIFEST_FILE
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA_NAME:
            raise PackageError(f"not a {SCHEMA_NAME} manifest")
        if d.get("version") != SCHEMA_VERSION:
            raise PackageError(
                f"manifest version {d.get('version')} not supported (this reader: "
                f"{SCHEMA_VERSION}); recompile the model with this reef_rocm"
            )
        try:
            buffers = [Buffer(**b) for b in d["buffers"]]
            variants = {
                name: Variant(
                    name=v["name"], binary=v["binary"], source=v["source"],
                    kernels=[_kernel_from_json(name, k) for k in v["kernels"]],
                )
                for name, v in d["variants"].items()
            }  # fmt: skip
            m = cls(
                model=d["model"], target=d["target"], tools=d["tools"], buffers=buffers,
                inputs=list(d["inputs"]), outputs=list(d["outputs"]), weights=d["weights"],
                variants=variants, reference=d["reference"], created=d.get("created", ""),
            )  # fmt: skip
        except (KeyError, TypeError) as e:
            raise PackageError(f"malformed manifest: {e!r}") from None
        m.validate()
        return m

    @classmethod
    def load(cls, directory: str | Path) -> Manifest:
        path = Path(directory) / MANIFEST_FILE
        if not path.is_file():
            raise PackageError(f"{directory}: no {MANIFEST_FILE} (not a model package?)")
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise PackageError(f"{path}: unreadable manifest: {e}") from None
        return cls.from_json(d)

    def validate(self) -> None:
        """Structural checks a reader relies on; raises PackageError naming the problem."""
        for i, b in enumerate(self.buffers):
            if b.id != i:
                raise PackageError(f"buffer {i} has id {b.id}; ids must equal list positions")
            if b.role not in ROLES:
                raise PackageError(f"buffer {i}: unknown role {b.role!r}")
            if b.dtype not in DTYPE_BYTES:
                raise PackageError(f"buffer {i}: unsupported dtype {b.dtype!r}")
            if b.bytes <= 0:
                raise PackageError(f"buffer {i}: size {b.bytes}")
        n = len(self.buffers)
        for bid in (*self.inputs, *self.outputs):
            if not 0 <= bid < n:
                raise PackageError(f"input/output buffer id {bid} out of range")
        if "plain" not in self.variants:
            raise PackageError("manifest has no plain variant")
        for v in self.variants.values():
            for k in v.kernels:
                where = f"{v.name}/{k.name}"
                if not (_dims3(k.grid) and _dims3(k.block)):
                    raise PackageError(
                        f"{where}: grid {k.grid} and block {k.block} must be 3 positive ints"
                    )
                for a in (*k.args, *({"kind": "buffer", "id": w} for w in k.writes)):
                    kind = a.get("kind")
                    if kind not in ARG_KINDS:
                        raise PackageError(f"{where}: unknown argument kind {kind!r}")
                    if kind == "buffer" and not 0 <= a.get("id", -1) < n:
                        raise PackageError(f"{where}: buffer id {a.get('id')} invalid")
                    if kind == "reef_param" and (
                        not isinstance(a.get("name"), str) or a.get("dtype") not in DTYPE_BYTES
                    ):
                        raise PackageError(f"{where}: reef_param {a} needs a name and a dtype")
                if k.loads is not None and not all(0 <= b < n for b in k.loads):
                    raise PackageError(f"{where}: loads {k.loads} name unknown buffers")
                if v.name in DKP_VARIANTS:
                    _validate_dkp(where, k)
                elif k.dkp is not None:
                    raise PackageError(f"{where}: only dkp-variant kernels carry a dkp entry")
                if v.name in PREEMPTIBLE_VARIANTS:
                    counts = "virtual_blocks" if v.name in DKP_VARIANTS else "blocks"
                    _validate_preempt(where, k, counts)
                elif k.preempt is not None:
                    raise PackageError(f"{where}: only preemptible kernels carry a preempt entry")
        for name in DKP_VARIANTS:
            if name not in self.variants:
                continue
            plain, dkp = self.variants["plain"].kernels, self.variants[name].kernels
            if len(plain) != len(dkp):
                raise PackageError(f"{name} variant has {len(dkp)} kernels, plain {len(plain)}")
            for i, (p, d) in enumerate(zip(plain, dkp, strict=True)):
                # the virtual grid is the plain launch: a DKP runtime may rely on either
                if d.dkp is not None and (d.dkp.grid != p.grid or d.dkp.block != p.block):
                    raise PackageError(
                        f"{name}/{d.name}: original grid {d.dkp.grid} block {d.dkp.block} "
                        f"differ from plain kernel {i}'s {p.grid} {p.block}"
                    )


def _dims3(v: Any) -> bool:
    return (
        isinstance(v, list) and len(v) == 3
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)
    )  # fmt: skip


def _kernel_from_json(variant: str, k: dict[str, Any]) -> LaunchRecord:
    k = dict(k)
    raw = {key: k.pop(key, None) for key in ("dkp", "preempt")}
    kern = LaunchRecord(**k)
    for key, cls in (("dkp", DkpLaunch), ("preempt", PreemptLaunch)):
        if raw[key] is None:
            continue
        try:
            setattr(kern, key, cls(**raw[key]))
        except TypeError as e:  # missing / unknown keys: name the kernel, not the dataclass
            raise PackageError(
                f"{variant}/{k.get('name')}: malformed {key} entry {raw[key]!r}: {e}"
            ) from None
    return kern


def _validate_preempt(where: str, k: LaunchRecord, counts: str) -> None:
    """A preemptible kernel must say what its slot counts and how its polls are set."""
    kinds = [a["kind"] for a in k.args]
    if kinds.count("preempt_flag") != 1 or kinds.count("completion_slot") != 1:
        raise PackageError(f"{where}: a preemptible kernel takes one flag and one slot")
    p = k.preempt
    if p is None:
        raise PackageError(f"{where}: preemptible kernel has no preempt entry")
    if p.slot_counts != counts:
        raise PackageError(f"{where}: preempt slot_counts {p.slot_counts!r}, expected {counts!r}")
    if not isinstance(p.default_poll_every, int) or p.default_poll_every < 0:
        raise PackageError(f"{where}: default_poll_every {p.default_poll_every!r}")
    if p.loop_trips is not None and (not isinstance(p.loop_trips, int) or p.loop_trips < 0):
        raise PackageError(f"{where}: loop_trips {p.loop_trips!r}")
    if p.poll_param is not None:
        reef = [a for a in k.args if a["kind"] == "reef_param" and a["name"] == p.poll_param]
        if len(reef) != 1 or reef[0]["dtype"] != "int32":
            raise PackageError(
                f"{where}: poll_param {p.poll_param!r} is not one int32 reef_param argument"
            )


def _validate_dkp(where: str, k: LaunchRecord) -> None:
    """A dkp-variant kernel must say how to launch it (schema version 2)."""
    d = k.dkp
    if d is None:
        raise PackageError(
            f"{where}: dkp-variant kernel has no dkp entry (virtual blocks, original grid, "
            "parameter roles)"
        )
    if not (_dims3(d.grid) and _dims3(d.block)):
        raise PackageError(f"{where}: dkp grid {d.grid} / block {d.block} not 3 positive ints")
    if d.virtual_blocks != d.grid[0] * d.grid[1] * d.grid[2]:
        raise PackageError(
            f"{where}: dkp virtual_blocks {d.virtual_blocks} != product of grid {d.grid}"
        )
    if d.block != k.block:
        raise PackageError(f"{where}: dkp block {d.block} differs from the launch's {k.block}")
    if not isinstance(d.params, dict) or sorted(d.params.values(), key=str) != sorted(DKP_ROLES):
        raise PackageError(
            f"{where}: dkp params {d.params} must give each of {', '.join(DKP_ROLES)} once"
        )
    poll = k.preempt.poll_param if k.preempt is not None else None
    reef = {a["name"] for a in k.args if a["kind"] == "reef_param" and a["name"] != poll}
    if not reef <= set(d.params):
        raise PackageError(f"{where}: reef_ arguments {sorted(reef - set(d.params))} have no role")
    if k.launch_params != {"blockIdx.x": d.param("grid_blocks")}:
        raise PackageError(
            f"{where}: launch_params {k.launch_params} must give blockIdx.x by the "
            f"grid_blocks parameter {d.param('grid_blocks')!r}"
        )
    if k.grid[1:] != [1, 1]:
        raise PackageError(f"{where}: dkp launch grid {k.grid} must be 1-D")


def idempotence_violations(manifest: Manifest, variant: str = "plain") -> list[str]:
    """Why re-running some kernel j <= k after kernels 0..k ran could change results.

    Re-running kernel j is harmless iff (a) nothing j reads was overwritten after j first
    ran and (b) what j writes is not also written by another kernel (a re-run would clobber
    the later value) nor read by j itself (an in-place update or an atomic accumulation: a
    re-run, or a block re-run after a partial run, starts from the first run's result). With
    single assignment of
    every buffer (each written by exactly one kernel, never an input/param) and every read
    of a non-input buffer coming after its one writer, all three hold for any j <= k. This
    checks that, from the kernels' read/write sets alone (no code generation, no GPU).
    """
    problems: list[str] = []
    kernels = manifest.variant(variant).kernels
    writer: dict[int, int] = {}
    for k, kern in enumerate(kernels):
        for b in kern.writes:
            role = manifest.buffers[b].role
            if role in ("input", "param", "const"):
                problems.append(f"kernel {k} ({kern.name}) writes {role} buffer {b}")
            if b in writer and writer[b] != k:
                problems.append(
                    f"buffer {b} written by kernel {writer[b]} and again by kernel {k} "
                    f"({kern.name})"
                )
            writer.setdefault(b, k)
        for b in sorted(set(kern.reads()) & set(kern.writes)):
            # in place (``x += ...``, an atomic): a re-run reads what its first run wrote
            problems.append(f"kernel {k} ({kern.name}) reads and writes buffer {b} (in place)")
        for b in kern.reads():
            if manifest.buffers[b].role in ("input", "param", "const"):
                continue
            if b not in writer:
                problems.append(f"kernel {k} ({kern.name}) reads buffer {b} before any write")
    for b in manifest.outputs:
        if b not in writer and manifest.buffers[b].role == "output":
            problems.append(f"output buffer {b} is never written")
    return problems
