"""``reef inspect FILE|PACKAGE``: per-kernel resource table of code objects."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reef_rocm.errors import CodeObjectError

_COLUMNS = (
    # header, width, value
    ("kernel", 0, lambda k: k.name),
    ("VGPR", 5, lambda k: k.registers),
    ("AGPR", 5, lambda k: k.agprs if k.vendor == "amd" else "-"),
    ("SGPR", 5, lambda k: k.sgprs if k.vendor == "amd" else "-"),
    ("LDS/smem", 9, lambda k: k.shared_bytes),
    ("scratch", 8, lambda k: k.scratch_bytes),
    ("wave", 5, lambda k: k.wave_size),
    ("maxthr", 7, lambda k: k.max_threads),
    ("args", 6, lambda k: k.param_bytes),
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="per-kernel registers, shared memory/LDS and scratch of code objects",
        description="Read HSACO (code object v4-v6, also clang offload bundles) and cubin "
        "files, or every *.hsaco/*.cubin under a model package directory, and print each "
        "kernel's resource use. For NVIDIA the VGPR column holds registers per thread.",
    )
    p.add_argument("paths", nargs="+", metavar="FILE|PACKAGE")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--occupancy", type=int, metavar="THREADS",
        help="also show resident blocks per CU/SM at this block size",
    )
    p.set_defaults(func=handler)


def _collect(paths: list[str]):
    from reef_rocm.codeobj.reader import find_code_objects, read_code_objects

    objs = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            files = find_code_objects(path)
            if not files:
                raise CodeObjectError(f"{path}: no *.hsaco or *.cubin files in this directory")
        elif path.exists():
            files = [path]
        else:
            raise CodeObjectError(f"{path}: no such file or directory")
        for f in files:
            objs.extend(read_code_objects(f))
    return objs


def _occ(co, k, threads: int | None):
    if threads is None:
        return None
    from reef_rocm.codeobj.occupancy import ARCHS, occupancy

    if co.arch not in ARCHS:
        return None
    return occupancy(co.arch, k, threads)


def handler(args: argparse.Namespace) -> int:
    objs = _collect(args.paths)
    if args.json:
        out = []
        for co in objs:
            d = co.as_dict()
            if args.occupancy:
                for name, k in co.kernels.items():
                    occ = _occ(co, k, args.occupancy)
                    d["kernels"][name]["occupancy"] = occ.as_dict() if occ else None
            out.append(d)
        print(json.dumps(out, indent=2))
        return 0
    for co in objs:
        version = f"code object v{co.version}" if co.vendor == "amd" else f"ELF ABI {co.version}"
        print(f"{co.source}: {co.format} {co.target_id} ({version}), {len(co.kernels)} kernels")
        for w in co.warnings:
            print(f"  warning: {w}")
        cols = list(_COLUMNS)
        rows = [[str(get(k)) for _, _, get in cols] for k in co.kernels.values()]
        if args.occupancy:
            cols.append((f"blocks@{args.occupancy}", 10, None))
            for row, k in zip(rows, co.kernels.values(), strict=True):
                occ = _occ(co, k, args.occupancy)
                row.append(f"{occ.blocks_per_cu} ({occ.limiter})" if occ else "?")
        name_w = max([len("kernel"), *(len(r[0]) for r in rows)])
        widths = [name_w, *(max(w, len(h), *(len(r[i]) for r in rows))
                            for i, (h, w, _) in enumerate(cols) if i)]
        # Names (and the occupancy text) read best left-aligned, numbers right-aligned.
        left = {0, len(cols) - 1} if args.occupancy else {0}
        print(_row([h for h, _, _ in cols], widths, left))
        for r in rows:
            print(_row(r, widths, left))
    return 0


def _row(values: list[str], widths: list[int], left: set[int]) -> str:
    return "  " + "  ".join(
        v.ljust(w) if i in left else v.rjust(w)
        for i, (v, w) in enumerate(zip(values, widths, strict=True))
    ).rstrip()
