#!/usr/bin/env python3
"""Run one variant of a model package kernel by kernel, synchronizing after each, and name
the first kernel that faults (illegal or misaligned address, ...): a fault kills the CUDA
context, so every later call fails too and a test log only shows the aftermath.

    python tools/find_faulting_kernel.py PACKAGE_DIR [--variant dkp] [--dkp-split]

``--dkp-split`` also runs each dkp kernel as the executor tests do: its virtual blocks as two
ranges on a third as many physical blocks (grid-stride). Prints one line per kernel checked
and exits 1 at the first fault (with the kernel's name, grid and block).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reef_rocm.gpu import open_device  # noqa: E402
from reef_rocm.package.files import ModelPackage  # noqa: E402
from reef_rocm.runtime.executor import ModelInstance  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package")
    ap.add_argument("--variant", default="plain")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--dkp-split", action="store_true")
    a = ap.parse_args()
    pkg = ModelPackage.load(Path(a.package))
    with open_device(a.backend) as dev, ModelInstance(dev, pkg, variant=a.variant) as inst:
        s = dev.create_stream()
        for i, x in enumerate(pkg.reference_inputs()):
            inst.set_input(i, x, s)
        inst.begin(s)
        keep = []  # bound launches stay alive until the stream has run them
        for i, k in enumerate(inst.kernels):
            what = f"kernel {i} {k.name} grid {k.grid} block {k.block}"
            try:
                inst.launch_range(s, i, i + 1)
                s.synchronize()
                if a.dkp_split and k.dkp is not None:
                    n = k.dkp.virtual_blocks
                    h = n // 2
                    for begin, count in ((0, h), (h, n - h)):
                        if count:
                            keep.append(inst.bind_dkp(i, begin, count, max(1, count // 3)))
                            keep[-1].launch(s)
                            s.synchronize()
            except Exception as e:  # noqa: BLE001 - report whatever the driver said
                print(f"FAULT at {what}: {e}", flush=True)
                return 1
            print(f"ok    {what}", flush=True)
        s.close()
    print(f"{pkg.name} {a.variant}: {inst.num_kernels} kernels ran without a fault")
    return 0


if __name__ == "__main__":
    sys.exit(main())
