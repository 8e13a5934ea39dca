"""CU masks for AQL queues on multi-XCC GPUs (MI300), as amdkfd maps them.

``hsa_amd_queue_cu_set_mask`` hands the mask to amdkfd, whose
``mqd_symmetrically_map_cu_mask`` (kfd_mqd_manager.c, Linux 6.x) programs each XCC's
per-SE registers. Facts of that mapping (read in Linux 6.12), which this module models:

* with ``n`` XCCs in the KFD node, XCC ``x`` takes mask bits ``x, x + n, x + 2n, ...``: a
  contiguous mask is interleaved over every XCC, never packed into one;
* inside one XCC the bits it takes go to CUs in this order: CU ordinal 0 of SH 0 of SE 0,
  SE 1, ..., then SH 1 of every SE, ..., then CU ordinal 1, and so on (CU outermost, then
  SH, then SE innermost); a CU ordinal that an SH lacks is skipped without using a bit;
* CU ordinals are logical: the k-th *active* CU of an SH (harvested CUs are compacted
  away; the hardware maps ordinals onto the surviving CUs), programmed as bit
  ``ordinal + 16 * sh`` of the SE's register;
* bits at or past the node's active CU count are ignored.

So "these CUs" must be translated: :func:`mask_words` builds the mask for a set of
:class:`CuLocation` (XCC, SE, SH, active ordinal), :func:`xcc_mask_words` for whole XCCs,
and :meth:`CuTopology.location_of_physical` turns a physical CU slot (as HW_ID reports it)
into its active ordinal given the SH's active-CU bitmap. gfx9 CUs only (gfx10+ WGP mode
moves two bits at a time; not modelled).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

#: amdkfd walks at most 16 CU ordinals per SH (one 16-bit half of the SE register per SH)
MAX_CU_PER_SH = 16


@dataclass(frozen=True, order=True)
class CuLocation:
    xcc: int
    se: int
    sh: int
    cu: int  # active-CU ordinal inside the SH (harvest-compacted)


@dataclass(frozen=True)
class CuTopology:
    """Active CUs per SH of each XCC: ``active[xcc][se][sh]`` is a count."""

    active: tuple[tuple[tuple[int, ...], ...], ...]
    bitmaps: tuple[tuple[tuple[int, ...], ...], ...] | None = None  # physical slots, if known

    def __post_init__(self) -> None:
        if not self.active or not all(self.active):
            raise ValueError("topology needs at least one XCC with one SE")
        shape = {(len(x), len(x[0])) for x in self.active}
        if len(shape) != 1 or any(len(se) != len(x[0]) for x in self.active for se in x):
            raise ValueError("every XCC must have the same SE x SH shape")
        for x in self.active:
            for se in x:
                for n in se:
                    if not 0 <= n <= MAX_CU_PER_SH:
                        raise ValueError(f"{n} CUs in one SH: must be 0..{MAX_CU_PER_SH}")

    @classmethod
    def uniform(cls, num_xcc: int, num_se: int, sh_per_se: int, cu_per_sh: int) -> CuTopology:
        return cls(tuple(tuple(tuple([cu_per_sh] * sh_per_se) for _ in range(num_se))
                         for _ in range(num_xcc)))

    @classmethod
    def from_bitmaps(cls, bitmaps: Sequence[Sequence[Sequence[int]]]) -> CuTopology:
        """``bitmaps[xcc][se][sh]``: bit p set when physical CU slot p of that SH is active
        (amdgpu's cu_info bitmap)."""
        bm = tuple(tuple(tuple(int(b) for b in se) for se in x) for x in bitmaps)
        return cls(tuple(tuple(tuple(bin(b).count("1") for b in se) for se in x) for x in bm),
                   bm)

    @classmethod
    def from_counts(cls, num_xcc: int, num_se: int, sh_per_se: int,
                    compute_units: int) -> CuTopology:
        """The topology when every SH has the same number of active CUs; ValueError when
        ``compute_units`` does not divide evenly (harvesting differs between SHs, which the
        runtime does not report: give the bitmaps instead)."""
        shs = num_xcc * num_se * sh_per_se
        if shs <= 0 or compute_units % shs:
            raise ValueError(
                f"{compute_units} CUs do not spread evenly over {num_xcc} XCC x {num_se} SE x "
                f"{sh_per_se} SH: the per-SH harvest is not uniform, build the topology with "
                "CuTopology.from_bitmaps")
        return cls.uniform(num_xcc, num_se, sh_per_se, compute_units // shs)

    @property
    def num_xcc(self) -> int:
        return len(self.active)

    @property
    def num_se(self) -> int:
        return len(self.active[0])

    @property
    def sh_per_se(self) -> int:
        return len(self.active[0][0])

    @property
    def total(self) -> int:
        return sum(n for x in self.active for se in x for n in se)

    def xcc_cus(self, xcc: int) -> list[CuLocation]:
        """The CUs of one XCC in the order amdkfd hands them mask bits."""
        out = []
        per = self.active[xcc]
        for cu in range(MAX_CU_PER_SH):
            for sh in range(self.sh_per_se):
                for se in range(self.num_se):
                    if per[se][sh] > cu:
                        out.append(CuLocation(xcc, se, sh, cu))
        return out

    @cached_property
    def _bit_of(self) -> dict[CuLocation, int]:
        n = self.num_xcc
        return {loc: x + n * k for x in range(n) for k, loc in enumerate(self.xcc_cus(x))}

    def bit_of(self, loc: CuLocation) -> int:
        """The mask bit that enables ``loc``; ValueError if no bit reaches it."""
        bit = self._bit_of.get(loc)
        if bit is None:
            raise ValueError(f"{loc} is not an active CU of this topology")
        if bit >= self.total:
            raise ValueError(f"{loc} would need mask bit {bit}, past the node's {self.total} "
                             "active CUs: amdkfd ignores that bit (uneven harvest across XCCs)")
        return bit

    def location_of_physical(self, xcc: int, se: int, sh: int, slot: int) -> CuLocation:
        """The active ordinal of physical CU ``slot`` (needs ``from_bitmaps``)."""
        if self.bitmaps is None:
            raise ValueError("physical CU slots need the per-SH bitmaps (from_bitmaps)")
        bm = self.bitmaps[xcc][se][sh]
        if not bm >> slot & 1:
            raise ValueError(f"physical CU {slot} of XCC {xcc} SE {se} SH {sh} is harvested")
        return CuLocation(xcc, se, sh, bin(bm & ((1 << slot) - 1)).count("1"))

    def locations(self, words: Sequence[int]) -> set[CuLocation]:
        """Where a mask enables CUs: the inverse of :func:`mask_words`."""
        bits = {32 * i + b for i, w in enumerate(words) for b in range(32) if w >> b & 1}
        return {loc for loc, bit in self._bit_of.items() if bit in bits and bit < self.total}


def _words(bits: Iterable[int], total: int) -> list[int]:
    words = [0] * ((total + 31) // 32)
    for b in bits:
        words[b // 32] |= 1 << (b % 32)
    return words


def mask_words(topology: CuTopology, cus: Iterable[CuLocation]) -> list[int]:
    """The hsa_amd_queue_cu_set_mask words enabling exactly ``cus``."""
    bits = {topology.bit_of(c) for c in cus}
    if not bits:
        raise ValueError("CU mask is empty: a queue needs at least one CU")
    return _words(bits, topology.total)


def xcc_mask_words(topology: CuTopology, xccs: Iterable[int]) -> list[int]:
    """Mask words enabling every CU of the given XCCs and no other."""
    chosen = sorted(set(xccs))
    for x in chosen:
        if not 0 <= x < topology.num_xcc:
            raise ValueError(f"XCC {x} outside 0..{topology.num_xcc - 1}")
    return mask_words(topology, [c for x in chosen for c in topology.xcc_cus(x)])


def logical_mask_words(indices: Iterable[int], total: int) -> list[int]:
    """Mask words from raw logical bit indices (what hipExtStreamCreateWithCUMask takes)."""
    bits = set()
    for i in indices:
        if not 0 <= int(i) < total:
            raise ValueError(f"CU index {i} outside 0..{total - 1}")
        bits.add(int(i))
    if not bits:
        raise ValueError("CU mask is empty: a queue needs at least one CU")
    return _words(bits, total)
