"""Which SMs/CUs run RT work in a padded launch: hardware ids and the RT/BE split.

The dispatcher reads a hardware id per block (``reef_dkp_hw_id`` in
hip_kernels/reef_dkp_dispatch.cuh) and looks it up in a byte table (1 = RT side). The table
is built here from the ids that exist on the device, never from a hard-coded CU count:

* NVIDIA: the id is ``%smid``. PTX does not promise contiguous numbering (``%nsmid`` may
  exceed the SM count), so the ids come from a probe launch (``DkpRuntime.probe_hw_ids``);
  without one, ``0 .. compute_units-1`` (the device's SM count) is assumed.
* AMD gfx9: the id is HW_ID bits [15:8]: CU_ID (4 bits) | SH_ID (1) << 4 | SE_ID (3) << 5,
  and on gfx940/941/942 XCC_ID << 8 (hwreg XCC_ID). Harvested CUs leave holes, so AMD ids
  always come from the probe.

gfx942 (MI300): a device in SPX mode is 8 XCCs (accelerator complex dies) of 38 active CUs,
each with its own L2; the hardware hands a dispatch's workgroups to the XCCs round-robin
(workgroup i to XCC i mod 8), and within an XCC to its CUs. The XCC-local ids repeat on every
XCC, so the id must carry XCC_ID to be unique. An RT/BE split can then be made two ways:
``spread`` gives RT the first n/8 CUs of every XCC (every XCC's round-robin share of blocks
finds RT CUs, RT work sees all eight L2s, BE shares each L2 with RT), ``packed`` gives RT
whole XCCs first (RT keeps its own L2s and BE never evicts them, but only the blocks sent to
those XCCs can take RT work, so RT gets a fraction of the blocks in flight; the dispatcher's
helping rule keeps it correct either way). Neither has run on an MI300: docs/dkp.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AMD_CU_BITS, AMD_SH_BITS, AMD_SE_BITS = 4, 1, 3
AMD_XCC_SHIFT = 8


@dataclass(frozen=True)
class AmdCuId:
    xcc: int
    se: int
    sh: int
    cu: int


def decode_amd_id(hw_id: int) -> AmdCuId:
    """The fields of an AMD dispatcher id (HW_ID[15:8] | XCC_ID << 8)."""
    if hw_id < 0:
        raise ValueError(f"hardware id {hw_id} < 0")
    local = hw_id & 0xFF
    return AmdCuId(
        xcc=hw_id >> AMD_XCC_SHIFT, se=local >> (AMD_CU_BITS + AMD_SH_BITS),
        sh=(local >> AMD_CU_BITS) & 1, cu=local & 0xF,
    )  # fmt: skip


def encode_amd_id(xcc: int, se: int, sh: int, cu: int) -> int:
    if not (0 <= cu < 16 and 0 <= sh < 2 and 0 <= se < 8 and 0 <= xcc < 16):
        raise ValueError(f"AMD CU id out of range: xcc={xcc} se={se} sh={sh} cu={cu}")
    return (xcc << AMD_XCC_SHIFT) | (se << 5) | (sh << 4) | cu


@dataclass(frozen=True)
class CuSplit:
    """RT and BE hardware ids of one padded launch and the table the dispatcher reads."""

    rt_ids: tuple[int, ...]
    be_ids: tuple[int, ...]

    @property
    def table(self) -> np.ndarray:
        """uint8[max id + 1]: 1 where the id is an RT CU (ids beyond the table are BE)."""
        ids = (*self.rt_ids, *self.be_ids)
        t = np.zeros(max(ids, default=-1) + 1, dtype=np.uint8)
        t[list(self.rt_ids)] = 1
        return t


def order_ids(hw_ids: Sequence[int], vendor: str, mode: str = "spread") -> list[int]:
    """Distinct ids in the order RT takes them: NVIDIA ascending; AMD ``spread`` round-robin
    over XCCs (then SEs), ``packed`` XCC by XCC."""
    ids = sorted(set(int(i) for i in hw_ids))
    if any(i < 0 for i in ids):
        raise ValueError("hardware ids must be >= 0")
    if vendor == "nvidia":
        return ids
    if vendor != "amd":
        raise ValueError(f"vendor must be nvidia or amd, got {vendor!r}")
    if mode == "packed":
        return ids
    if mode != "spread":
        raise ValueError(f"mode must be spread or packed, got {mode!r}")
    groups: dict[tuple[int, int], list[int]] = {}
    for i in ids:
        d = decode_amd_id(i)
        groups.setdefault((d.xcc, d.se), []).append(i)
    # round-robin: the k-th CU of every (XCC, SE) before the (k+1)-th of any, XCCs first
    keys = sorted(groups, key=lambda k: (k[1], k[0]))
    out, k = [], 0
    while len(out) < len(ids):
        for key in keys:
            g = groups[key]
            if k < len(g):
                out.append(g[k])
        k += 1
    return out


def split_cus(hw_ids: Sequence[int], n_rt: int, vendor: str, mode: str = "spread") -> CuSplit:
    """The first ``n_rt`` ids (in ``order_ids`` order) run RT work, the rest BE work."""
    ordered = order_ids(hw_ids, vendor, mode)
    if not 0 <= n_rt <= len(ordered):
        raise ValueError(f"n_rt={n_rt} outside 0..{len(ordered)} (the device's CUs)")
    return CuSplit(tuple(ordered[:n_rt]), tuple(ordered[n_rt:]))


def cus_needed(blocks: int, blocks_per_cu: int, compute_units: int) -> int:
    """CUs a kernel of ``blocks`` blocks occupies in its first wave at ``blocks_per_cu``
    resident blocks per CU: the rest of the device is idle while it runs (what DKP fills)."""
    if blocks < 1 or blocks_per_cu < 1 or compute_units < 1:
        raise ValueError(f"blocks={blocks}, blocks_per_cu={blocks_per_cu}, "
                         f"compute_units={compute_units} must be >= 1")  # fmt: skip
    return min(compute_units, math.ceil(blocks / blocks_per_cu))
