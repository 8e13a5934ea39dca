"""``reef inspect`` through the real CLI entry point."""

from __future__ import annotations

import json
import shutil

from reef_rocm.cli import main


def _package(tmp_path, built):
    pkg = tmp_path / "pkg"
    (pkg / "targets" / "x").mkdir(parents=True)
    (pkg / "manifest.json").write_text("{}")
    for b in built:
        shutil.copy(b.path, pkg / "targets" / "x" / b.path.name)
    return pkg


def test_inspect_file_table(all_hsaco, capsys):
    assert main(["inspect", str(all_hsaco[0].path), "--occupancy", "256"]) == 0
    out = capsys.readouterr().out
    assert "VGPR" in out and "kernel" in out
    assert "blocks@256" in out


def test_inspect_package_json(tmp_path, all_hsaco, all_cubin, capsys):
    pkg = _package(tmp_path, all_hsaco[:2] + all_cubin[:1])
    assert main(["inspect", str(pkg), "--json", "--occupancy", "128"]) == 0
    objs = json.loads(capsys.readouterr().out)
    assert len(objs) == 3
    for co in objs:
        assert co["kernels"]
        for k in co["kernels"].values():
            assert {"registers", "shared_bytes", "scratch_bytes", "occupancy"} <= set(k)
            assert k["occupancy"]["blocks_per_cu"] >= 0


def test_inspect_errors(tmp_path, capsys):
    bad = tmp_path / "bad.hsaco"
    bad.write_bytes(b"\x7fELF")
    assert main(["inspect", str(bad)]) == 1
    assert "truncated" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing")]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["inspect", str(empty)]) == 1
    assert "no *.hsaco or *.cubin" in capsys.readouterr().err
