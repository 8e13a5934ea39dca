"""The hand-written DKP-ready fixture (dkp_fixture.cu) as the DKP build sees a package:
its dkp-variant launch records, and a NumPy reference of each kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reef_rocm.package.manifest import DkpLaunch, LaunchRecord

SOURCE = Path(__file__).with_name("dkp_fixture.cu")
ROLES = {"reef_grid_blocks": "grid_blocks", "reef_vblock_begin": "vblock_begin",
         "reef_vblock_count": "vblock_count"}  # fmt: skip


def record(name: str, blocks: int, block: list[int], out_id: int, in_id: int) -> LaunchRecord:
    args = [{"kind": "buffer", "id": out_id}, {"kind": "buffer", "id": in_id}] + [
        {"kind": "reef_param", "name": n, "dtype": "int32"} for n in ROLES
    ]
    return LaunchRecord(
        name=name, func=name, grid=[blocks, 1, 1], block=block, shared_mem=0, args=args,
        writes=[out_id], launch_params={"blockIdx.x": "reef_grid_blocks"},
        dkp=DkpLaunch(blocks, [blocks, 1, 1], block, dict(ROLES)),
    )  # fmt: skip


def kernels(blocks: int = 64) -> list[LaunchRecord]:
    return [
        record("fx_scale_kernel", blocks, [32, 4, 1], 1, 0),
        record("fx_blocksum_kernel", blocks, [128, 1, 1], 2, 0),
    ]


def reference(x: np.ndarray, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    vb = np.repeat(np.arange(blocks, dtype=np.float32), 128)
    y = x * np.float32(3) + vb
    sums = x.reshape(blocks, 128)
    # the tree order of the kernel (pairwise halves), so the check can be bit-exact
    while sums.shape[1] > 1:
        h = sums.shape[1] // 2
        sums = sums[:, :h] + sums[:, h:]
    return y, sums[:, 0].copy()
