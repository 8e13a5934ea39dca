"""CU split math: hardware ids, their AMD fields, RT/BE orders, the dispatcher's table."""

from __future__ import annotations

import numpy as np
import pytest

from reef_rocm.dkp.split import (
    cus_needed,
    decode_amd_id,
    encode_amd_id,
    order_ids,
    split_cus,
)  # fmt: skip


def test_amd_id_round_trip_matches_hw_id_bits():
    # HW_ID[15:8] = CU_ID[11:8] | SH_ID[12] | SE_ID[15:13]; XCC_ID above
    hw_id_reg = (5 << 8) | (1 << 12) | (3 << 13)  # cu 5, sh 1, se 3
    local = (hw_id_reg >> 8) & 0xFF
    d = decode_amd_id(local | (6 << 8))
    assert (d.xcc, d.se, d.sh, d.cu) == (6, 3, 1, 5)
    for xcc, se, sh, cu in [(0, 0, 0, 0), (7, 7, 1, 15), (3, 2, 0, 9)]:
        assert decode_amd_id(encode_amd_id(xcc, se, sh, cu)) == type(d)(xcc, se, sh, cu)
    with pytest.raises(ValueError):
        encode_amd_id(0, 8, 0, 0)


def _mi300_ids(xccs=8, cus=38):
    # 38 CUs per XCC as 4 SEs x 2 SHs with holes (harvested): CU ids 0..4 or 0..5 per SH
    ids = []
    for x in range(xccs):
        n = 0
        for se in range(4):
            for sh in range(2):
                for cu in range(5 if (se + sh) % 2 else 5 if n >= cus - 5 else 6):
                    if n < cus:
                        ids.append(encode_amd_id(x, se, sh, cu))
                        n += 1
    assert len(ids) == xccs * cus
    return ids


def test_spread_gives_every_xcc_its_share_packed_whole_xccs():
    ids = _mi300_ids()
    s = split_cus(ids, 8 * 10, "amd", "spread")
    per_xcc = np.bincount([decode_amd_id(i).xcc for i in s.rt_ids], minlength=8)
    assert per_xcc.tolist() == [10] * 8
    # and within each XCC over its SEs as evenly as possible
    se = np.bincount([decode_amd_id(i).se for i in s.rt_ids if decode_amd_id(i).xcc == 0])
    assert se.max() - se.min() <= 1
    p = split_cus(ids, 2 * 38, "amd", "packed")
    assert {decode_amd_id(i).xcc for i in p.rt_ids} == {0, 1}
    assert len(set(s.rt_ids) | set(s.be_ids)) == len(ids) and not set(s.rt_ids) & set(s.be_ids)


def test_table_marks_rt_ids_and_nothing_else():
    ids = [0, 2, 3, 7, 8, 130]  # non-contiguous (%smid has holes)
    s = split_cus(ids, 3, "nvidia")
    assert s.rt_ids == (0, 2, 3) and s.be_ids == (7, 8, 130)
    t = s.table
    assert t.dtype == np.uint8 and t.size == 131
    assert np.flatnonzero(t).tolist() == [0, 2, 3]
    assert split_cus(ids, 0, "nvidia").table.sum() == 0
    assert split_cus(ids, len(ids), "nvidia").table.sum() == len(ids)


def test_bad_splits_are_refused():
    with pytest.raises(ValueError, match="outside"):
        split_cus([0, 1], 3, "nvidia")
    with pytest.raises(ValueError, match="vendor"):
        order_ids([0], "intel")
    with pytest.raises(ValueError, match="mode"):
        order_ids([0], "amd", "diagonal")


@pytest.mark.parametrize(
    "blocks, per_cu, cus, want",
    [(392, 8, 132, 49), (98, 8, 132, 13), (1, 16, 132, 1), (100000, 4, 132, 132),
     (1056, 8, 132, 132), (1057, 8, 132, 132), (17, 16, 60, 2)],
)  # fmt: skip
def test_cus_needed(blocks, per_cu, cus, want):
    assert cus_needed(blocks, per_cu, cus) == want


def test_cus_needed_refuses_nonsense():
    with pytest.raises(ValueError):
        cus_needed(0, 8, 132)
