"""Turn the DKP-ready ``__global__`` kernels of a package's CUDA source into device functions
a dispatcher can call through a function pointer (docs/dkp.md, "Kernel bodies").

The package's dkp variant already runs a kernel for a range of virtual blocks on any 1-D
grid (docs/transform.md, "DKP-ready"). A body for the dispatcher is that kernel with

* ``blockIdx.x`` fixed to 0 and the DKP scalars set to one virtual block (``grid_blocks=1``,
  ``vblock_begin=vb``, ``vblock_count=1``), so one call runs exactly virtual block ``vb``;
* ``threadIdx`` replaced by the thread's position in the kernel's own block shape, computed
  from the dispatcher's 1-D thread index (the dispatcher's block has the same thread count);
* every ``__shared__`` array carved out of the dispatcher's dynamic shared memory at a fixed
  offset (static shared memory of indirectly called functions would be added up over all
  bodies; dynamic memory is sized for the larger callee per launch, as REEF did);
* a wrapper with one signature for every kernel, ``(args, vb, smem)``, that unpacks the
  kernel's arguments from a struct the host packs once (``ArgLayout``).

This is a text rewrite of TVM's generated CUDA, which has a regular shape (one
``extern "C" __global__`` definition per kernel, flat parameter lists, ``__shared__`` arrays
of fixed size); anything outside that shape is refused with a clear error rather than
guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reef_rocm.errors import UnsupportedError
from reef_rocm.package.manifest import LaunchRecord

# size and alignment (bytes) of the C types TVM puts in shared memory and parameter lists
C_TYPES: dict[str, int] = {
    "float": 4, "double": 8, "half": 2, "__half": 2, "nv_bfloat16": 2, "__nv_bfloat16": 2,
    "int": 4, "unsigned": 4, "uint": 4, "int32_t": 4, "uint32_t": 4, "int64_t": 8,
    "uint64_t": 8, "long": 8, "short": 2, "ushort": 2, "int16_t": 2, "uint16_t": 2,
    "char": 1, "signed char": 1, "uchar": 1, "int8_t": 1, "uint8_t": 1, "bool": 1,
    "float2": 8, "float4": 16, "half2": 4, "int2": 8, "int4": 16, "uint2": 8, "uint4": 16,
    "char4": 4, "uchar4": 4,
}  # fmt: skip
POINTER_BYTES = 8
SMEM_ALIGN = 16  # at least the widest vector type above

_KERNEL_DEF = re.compile(
    r'extern "C" __global__ void (?:__launch_bounds__\(\d+(?:,\s*\d+)?\) )?'
    r"(\w+)\(([^)]*)\)\s*([;{])"
)
_SHARED = re.compile(
    r"(?P<indent>[ \t]*)__shared__ (?:alignas\((?P<align>\d+)\) )?(?P<type>[A-Za-z_]\w*(?: \w+)?) "
    r"(?P<name>\w+)\[(?P<n>\d+)\];"
)
_DYN_SHARED = re.compile(
    r"extern __shared__ (?:__align__\(\d+\) )?(?:alignas\(\d+\) )?(\w+) (\w+)\[\];"
)
_FORBIDDEN = re.compile(r"\b(blockIdx\.[yz]|gridDim|blockDim)\b")


@dataclass(frozen=True)
class Param:
    ctype: str  # "float*", "int", ...
    name: str

    @property
    def is_pointer(self) -> bool:
        return self.ctype.endswith("*")

    @property
    def nbytes(self) -> int:
        if self.is_pointer:
            return POINTER_BYTES
        try:
            return C_TYPES[self.ctype]
        except KeyError:
            raise UnsupportedError(
                f"parameter {self.name}: unknown C type {self.ctype!r}"
            ) from None


@dataclass(frozen=True)
class ArgLayout:
    """The argument struct of one body: (parameter, offset) for every parameter that is not a
    DKP scalar, at C ABI offsets (each field aligned to its size)."""

    fields: tuple[tuple[Param, int], ...]
    nbytes: int

    @classmethod
    def of(cls, params: list[Param]) -> ArgLayout:
        off, out, align = 0, [], 1
        for p in params:
            n = p.nbytes
            off = (off + n - 1) // n * n
            out.append((p, off))
            off += n
            align = max(align, n)
        return cls(tuple(out), max(8, (off + align - 1) // align * align))


@dataclass
class KernelBody:
    """One kernel of a package as a dispatcher body."""

    kernel: str  # the package's kernel symbol
    symbol: str  # the wrapper's name in the DKP code object
    block: tuple[int, int, int]
    params: list[Param]  # the kernel's parameters in order
    layout: ArgLayout  # the argument struct (non-DKP parameters)
    smem_bytes: int  # dynamic shared memory the body needs (all its arrays, aligned)
    dkp_roles: dict[str, str]  # DKP scalar name -> role
    source: str = field(repr=False, default="")  # the twin and its wrapper (C++)

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


@dataclass
class PackageBodies:
    preamble: str  # TVM's header part of the source (includes, macros)
    bodies: list[KernelBody]
    code: str  # namespace with every twin + wrapper


def split_kernels(source: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """TVM CUDA source -> (preamble, {kernel: (parameter list, body text incl. braces)})."""
    defs: dict[str, tuple[str, str]] = {}
    first = None
    pos = 0
    while True:
        m = _KERNEL_DEF.search(source, pos)
        if m is None:
            break
        if first is None:
            first = m.start()
        if m.group(3) == ";":  # forward declaration
            pos = m.end()
            continue
        start = m.end() - 1
        depth, i = 0, start
        while True:
            c = source[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
            if i >= len(source):
                raise UnsupportedError(f"kernel {m.group(1)}: unbalanced braces in the source")
        defs[m.group(1)] = (m.group(2), source[start : i + 1])
        pos = i + 1
    if first is None:
        raise UnsupportedError('no extern "C" __global__ kernel definitions in the source')
    return source[:first], defs


def parse_params(plist: str) -> list[Param]:
    out = []
    for raw in filter(None, (p.strip() for p in plist.split(","))):
        toks = [t for t in raw.replace("*", " * ").split() if t not in ("__restrict__", "const")]
        name, ctype = toks[-1], " ".join(toks[:-1]).replace(" *", "*")
        out.append(Param(ctype, name))
    return out


def _rewrite_shared(kernel: str, body: str, dynamic_bytes: int) -> tuple[str, int]:
    """Every ``__shared__`` array becomes a pointer into ``reef_smem``; returns the new body and
    the bytes used."""
    off = 0

    def carve(m: re.Match) -> str:
        nonlocal off
        ctype = m.group("type")
        if ctype not in C_TYPES:
            raise UnsupportedError(
                f"{kernel}: shared array {m.group('name')} of unknown type {ctype!r}"
            )
        align = max(SMEM_ALIGN, int(m.group("align") or 0))
        off = (off + align - 1) // align * align
        at = off
        off += C_TYPES[ctype] * int(m.group("n"))
        return (f"{m.group('indent')}{ctype}* __restrict__ {m.group('name')} = "
                f"reinterpret_cast<{ctype}*>(reef_smem + {at});")  # fmt: skip

    body = _SHARED.sub(carve, body)

    def carve_dyn(m: re.Match) -> str:
        nonlocal off
        off = (off + 127) // 128 * 128
        at = off
        off += dynamic_bytes
        return f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>(reef_smem + {at});"

    body = _DYN_SHARED.sub(carve_dyn, body)
    if "__shared__" in body:
        line = next(ln for ln in body.splitlines() if "__shared__" in ln).strip()
        raise UnsupportedError(f"{kernel}: shared-memory declaration not understood: {line!r}")
    return body, (off + SMEM_ALIGN - 1) // SMEM_ALIGN * SMEM_ALIGN


def make_body(tag: str, kernel: LaunchRecord, plist: str, body: str) -> KernelBody:
    """The twin device function and the uniform-signature wrapper of one DKP-ready kernel."""
    if kernel.dkp is None:
        raise UnsupportedError(f"{kernel.name}: not a DKP-ready kernel (no dkp entry)")
    bad = _FORBIDDEN.search(body)
    if bad:
        raise UnsupportedError(f"{kernel.name}: uses {bad.group(1)}; a DKP body may only use "
                               "blockIdx.x and threadIdx")  # fmt: skip
    params = parse_params(plist)
    names = [p.name for p in params]
    want = [a["name"] if a["kind"] == "reef_param" else None for a in kernel.args]
    if len(names) != len(want) or any(
        w is not None and w != n for w, n in zip(want, names, strict=True)
    ):
        raise UnsupportedError(
            f"{kernel.name}: source parameters {names} do not match the manifest's arguments"
        )
    roles = dict(kernel.dkp.params)
    other = [a for a in kernel.args if a["kind"] == "reef_param" and a["name"] not in roles]
    if other:
        raise UnsupportedError(
            f"{kernel.name}: reef_ parameters {other} are not DKP scalars "
            "(a preemptible DKP kernel?); bodies take the dkp variant"
        )
    body, smem = _rewrite_shared(kernel.name, body, kernel.shared_mem)
    body = re.sub(r"\bblockIdx\.x\b", "0u", body)
    body = re.sub(r"\bthreadIdx\.", "reef_tid.", body)
    layout = ArgLayout.of([p for p in params if p.name not in roles])
    offsets = {p.name: off for p, off in layout.fields}
    bx, by, bz = kernel.block
    twin = f"{kernel.name}__twin"
    symbol = f"{tag}__{kernel.name}"
    value = {"vblock_begin": "reef_vb", "vblock_count": "1", "grid_blocks": "1"}
    call_args = [
        value[roles[p.name]] if p.name in roles
        else f"*reinterpret_cast<{p.ctype} const*>(reef_args + {offsets[p.name]})"
        for p in params
    ]  # fmt: skip
    sig = ", ".join(f"{p.ctype} {p.name}" for p in params)
    src = (
        f"static __device__ __forceinline__ void {twin}({sig}, const uint3 reef_tid, "
        f"unsigned char* __restrict__ reef_smem) {body}\n"
        f'extern "C" __device__ void {symbol}(const unsigned char* reef_args, int reef_vb, '
        f"unsigned char* reef_smem) {{\n"
        f"  const unsigned reef_t = threadIdx.x;\n"
        f"  const uint3 reef_tid = make_uint3(reef_t % {bx}u, reef_t / {bx}u % {by}u, "
        f"reef_t / {bx * by}u);\n"
        f"  {twin}({', '.join(call_args)}, reef_tid, reef_smem);\n"
        f"}}\n"
    )
    return KernelBody(kernel.name, symbol, (bx, by, bz), params, layout, smem, roles, src)


def package_bodies(tag: str, source: str, kernels: list[LaunchRecord]) -> PackageBodies:
    """Bodies for every launch of a package's dkp variant (``kernels`` in launch order; a
    kernel launched more than once gets one body, listed at each of its launches)."""
    if not re.fullmatch(r"[A-Za-z_]\w*", tag):
        raise ValueError(f"tag {tag!r} must be a C identifier")
    preamble, defs = split_kernels(source)
    bodies, parts, made = [], [], {}
    for k in kernels:
        if k.name not in defs:
            raise UnsupportedError(f"kernel {k.name} is not defined in the package source")
        b = made.get(k.name)
        if b is None:  # a kernel launched several times has one body
            b = made[k.name] = make_body(tag, k, *defs[k.name])
            parts.append(b.source)
        bodies.append(b)
    code = f"namespace {tag} {{\n" + "\n".join(parts) + f"}}  // namespace {tag}\n"
    return PackageBodies(preamble, bodies, code)
