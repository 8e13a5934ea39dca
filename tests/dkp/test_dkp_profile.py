"""The DKP profile file: what the scheduler reads to decide which RT kernels may be padded."""

from __future__ import annotations

import json

import pytest

from reef_rocm.dkp.profile import KIND, load_dkp_profile, profile_path
from reef_rocm.errors import PackageError


def _write(d, models):
    doc = {"kind": KIND, "arch": "sm_90", "device": "test", "sources": {}, "models": models}
    profile_path(d, "sm_90").write_text(json.dumps(doc))


def test_padded_within_tolerance(tmp_path):
    _write(tmp_path, {"m": [
        {"index": 0, "name": "k0", "plain_us": 100.0, "padded_us": {"56": 101.5, "255": 150.0}},
        {"index": 1, "name": "k1", "plain_us": 10.0, "padded_us": {"56": None, "255": 10.0}},
    ]})  # fmt: skip
    p = load_dkp_profile(tmp_path, "sm_90")
    assert p is not None and p.has("m") and not p.has("other")
    assert p.padded_within("m", 0, 56, 0.02) and not p.padded_within("m", 0, 56, 0.01)
    assert not p.padded_within("m", 0, 255, 0.02)
    assert not p.padded_within("m", 1, 56, 10.0)  # that proxy could not launch it
    assert not p.padded_within("m", 0, 64, 1.0)  # not measured: never guessed
    assert not p.padded_within("m", 2, 56, 1.0) and not p.padded_within("x", 0, 56, 1.0)
    assert p.plain_profile("m") == {"kernels": [{"name": "k0", "us_median": 100.0},
                                                {"name": "k1", "us_median": 10.0}]}  # fmt: skip


def test_missing_and_bad_profiles(tmp_path):
    assert load_dkp_profile(tmp_path, "sm_90") is None
    profile_path(tmp_path, "sm_90").write_text("{not json")
    with pytest.raises(PackageError, match="unreadable"):
        load_dkp_profile(tmp_path, "sm_90")
    profile_path(tmp_path, "sm_90").write_text(json.dumps({"kind": "other"}))
    with pytest.raises(PackageError, match="not a DKP profile"):
        load_dkp_profile(tmp_path, "sm_90")
