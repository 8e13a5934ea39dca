"""The CU-mask helper against a model of amdkfd's mqd_symmetrically_map_cu_mask.

The model below is written from the mapping's facts (Linux 6.12 kfd_mqd_manager.c): for
each XCC instance ``inst`` of ``n``, mask bit index i starts at inst and steps by n; CU
ordinals 0..15 outermost, then SH, then SE; an ordinal an SH lacks uses no bit; an enabled
bit sets bit ``cu + 16 * sh`` of se_mask[se]; the walk stops at the node's active count.
"""

from __future__ import annotations

import itertools

import pytest

from reef_rocm.rocm.hsa.cu_mask import (
    CuLocation,
    CuTopology,
    logical_mask_words,
    mask_words,
    xcc_mask_words,
)


def kfd_map(words, topo: CuTopology, count: int | None = None):
    """se_masks[xcc][se] as amdkfd would program them for ``words``."""
    n = topo.num_xcc
    count = min(count if count is not None else 32 * len(words), topo.total)
    out = []
    for inst in range(n):
        se_mask = [0] * topo.num_se
        i = inst
        done = i >= count
        for cu in range(16):
            if done:
                break
            for sh in range(topo.sh_per_se):
                if done:
                    break
                for se in range(topo.num_se):
                    if topo.active[inst][se][sh] > cu:
                        if words[i // 32] >> (i % 32) & 1:
                            se_mask[se] |= 1 << (cu + sh * 16)
                        i += n
                        if i >= count:
                            done = True
                            break
        out.append(se_mask)
    return out


def enabled(se_masks):
    return {CuLocation(x, se, b // 16, b % 16)
            for x, masks in enumerate(se_masks) for se, m in enumerate(masks)
            for b in range(32) if m >> b & 1}


MI300X_LIKE = CuTopology.uniform(num_xcc=8, num_se=4, sh_per_se=1, cu_per_sh=10)
HARVESTED = CuTopology.from_bitmaps([
    [[0b1111111011], [0b0111111111]],  # XCC0: SE0 9 CUs (slot 2 off), SE1 9 CUs
    [[0b1111111111], [0b1111101111]],  # XCC1: SE0 10, SE1 9 (slot 4 off)
])
TWO_SH = CuTopology.uniform(num_xcc=2, num_se=2, sh_per_se=2, cu_per_sh=4)


@pytest.mark.parametrize("topo", [MI300X_LIKE, HARVESTED, TWO_SH], ids=["mi300x", "harvest",
                                                                          "2sh"])
def test_each_cu_alone_lands_where_asked(topo):
    reachable = 0
    for x in range(topo.num_xcc):
        for loc in topo.xcc_cus(x):
            try:
                words = mask_words(topo, [loc])
            except ValueError as e:
                assert "past the node" in str(e)
                continue
            assert enabled(kfd_map(words, topo)) == {loc}
            assert topo.locations(words) == {loc}
            reachable += 1
    assert reachable == topo.total - (1 if topo is HARVESTED else 0)  # see the uneven test


def test_whole_xcc_masks_cover_that_xcc_only():
    for x in range(8):
        words = xcc_mask_words(MI300X_LIKE, [x])
        got = enabled(kfd_map(words, MI300X_LIKE))
        assert got == set(MI300X_LIKE.xcc_cus(x)) and len(got) == 40
    words = xcc_mask_words(MI300X_LIKE, [2, 5])
    assert {c.xcc for c in enabled(kfd_map(words, MI300X_LIKE))} == {2, 5}


def test_contiguous_mask_spreads_over_every_xcc():
    words = logical_mask_words(range(16), MI300X_LIKE.total)
    got = enabled(kfd_map(words, MI300X_LIKE))
    per_xcc = [sum(1 for c in got if c.xcc == x) for x in range(8)]
    assert per_xcc == [2] * 8  # 16 contiguous bits: two CUs on each of the eight XCCs
    # and inside an XCC they go to different SEs first
    assert {(c.se, c.cu) for c in got if c.xcc == 0} == {(0, 0), (1, 0)}


def test_any_subset_round_trips():
    topo = TWO_SH
    cus = [c for x in range(2) for c in topo.xcc_cus(x)]
    for r in (1, 3, 7):
        for subset in itertools.islice(itertools.combinations(cus, r), 40):
            words = mask_words(topo, subset)
            assert enabled(kfd_map(words, topo)) == set(subset)


def test_harvested_cus_use_compacted_ordinals():
    # XCC0 SE0's physical slot 3 is its third active CU (slot 2 is harvested)
    loc = HARVESTED.location_of_physical(0, 0, 0, 3)
    assert loc == CuLocation(0, 0, 0, 2)
    with pytest.raises(ValueError, match="harvested"):
        HARVESTED.location_of_physical(0, 0, 0, 2)
    assert enabled(kfd_map(mask_words(HARVESTED, [loc]), HARVESTED)) == {loc}


def test_uneven_harvest_across_xccs_reports_unreachable_cus():
    # XCC1 SE0 has a 10th CU; with 2 XCCs its bit would be 1 + 2*18 = 37 >= 37 active CUs
    with pytest.raises(ValueError, match="past the node"):
        mask_words(HARVESTED, [CuLocation(1, 0, 0, 9)])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="empty"):
        mask_words(MI300X_LIKE, [])
    with pytest.raises(ValueError, match="not an active CU"):
        mask_words(MI300X_LIKE, [CuLocation(0, 0, 0, 12)])
    with pytest.raises(ValueError, match="XCC 9"):
        xcc_mask_words(MI300X_LIKE, [9])
    with pytest.raises(ValueError, match="evenly"):
        CuTopology.from_counts(8, 4, 1, 304)  # MI300X: 38 CUs per XCC over 4 SEs
    assert CuTopology.from_counts(8, 4, 1, 320).total == 320
