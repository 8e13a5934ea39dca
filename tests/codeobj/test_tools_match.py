"""Our readers against the vendors' tools: ``llvm-readelf --notes`` for HSACOs and
``cuobjdump --dump-resource-usage`` for cubins, on every kernel of every fixture (and of every
package under REEF_CODEOBJ_DIRS)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from codeobj_tools import cuobjdump, llvm_readelf

from reef_rocm.codeobj import read_code_object
from reef_rocm.codeobj.amd import has_unified_vgprs, vgpr_granule

# metadata key -> KernelResources attribute
HSACO_FIELDS = {
    ".vgpr_count": "registers",
    ".agpr_count": "agprs",
    ".sgpr_count": "sgprs",
    ".group_segment_fixed_size": "shared_bytes",
    ".private_segment_fixed_size": "scratch_bytes",
    ".wavefront_size": "wave_size",
    ".max_flat_workgroup_size": "max_threads",
    ".kernarg_segment_size": "param_bytes",
}


def readelf_kernels(path: Path) -> tuple[dict[str, dict[str, str]], str]:
    """Scalar fields of each ``amdhsa.kernels`` entry and ``amdhsa.target`` from the YAML that
    llvm-readelf prints (only the flat part is needed, so no YAML library)."""
    tool = llvm_readelf()
    if tool is None:
        pytest.skip("llvm-readelf not installed (apt-get install llvm-16)")
    text = subprocess.run([tool, "--notes", str(path)], capture_output=True, text=True,
                          check=True).stdout
    kernels: list[dict[str, str]] = []
    target = ""
    inside = False
    for line in text.splitlines():
        if line.startswith("amdhsa.kernels:"):
            inside = True
            continue
        if line.startswith("amdhsa.target:"):
            target = line.split(":", 1)[1].strip()
        if inside and line and not line.startswith(" "):
            inside = False
        if not inside:
            continue
        m = re.match(r"^  - (\.\w+):\s*(.*)$", line)
        if m:
            kernels.append({})
        m = m or re.match(r"^    (\.\w+):\s*(.*)$", line)
        if m and kernels and m.group(2):
            kernels[-1][m.group(1)] = m.group(2).strip().strip("'")
    return {k[".name"]: k for k in kernels}, target


def cuobjdump_kernels(path: Path) -> dict[str, dict[str, int]]:
    tool = cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    text = subprocess.run([tool, "--dump-resource-usage", str(path)], capture_output=True,
                          text=True, check=True).stdout
    out: dict[str, dict[str, int]] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"^\s*Function (\S+):\s*$", line)
        if m:
            name = m.group(1)
            continue
        if name and "REG:" in line:
            out[name] = {k: int(v) for k, v in re.findall(r"([A-Z]+(?:\[\d+\])?):(\d+)", line)}
            name = None
    # Kernels own a CONSTANT[0] parameter bank; device functions (listed with -G) do not.
    return {k: v for k, v in out.items() if "CONSTANT[0]" in v}


def check_hsaco(path: Path) -> int:
    co = read_code_object(path)
    expected, target = readelf_kernels(path)
    assert target.endswith(co.target_id), (target, co.target_id)
    assert set(co.kernels) == set(expected), path
    for name, fields in expected.items():
        k = co.kernels[name]
        for key, attr in HSACO_FIELDS.items():
            want = int(fields.get(key, "0"))
            assert getattr(k, attr) == want, f"{path.name}:{name}: {attr}={getattr(k, attr)}, " \
                f"llvm-readelf {key}={want}"
    assert not co.warnings, co.warnings
    return len(expected)


def check_cubin(path: Path) -> int:
    co = read_code_object(path)
    expected = cuobjdump_kernels(path)
    assert set(co.kernels) == set(expected), path
    for name, f in expected.items():
        k = co.kernels[name]
        got = {
            "REG": k.registers,
            "SHARED": k.details["shared_section"],
            "STACK": k.details["stack"],
            "LOCAL": k.details["local"],
            "CONSTANT[0]": k.details["constant0"],
        }
        want = {key: f[key] for key in got}
        assert got == want, f"{path.name}:{name}"
        assert k.shared_bytes == k.details["shared_section"] - k.details["reserved_shared"]
    return len(expected)


def test_hsaco_matches_llvm_readelf(all_hsaco):
    archs, versions, n = set(), set(), 0
    for built in all_hsaco:
        n += check_hsaco(built.path)
        co = read_code_object(built.path)
        assert co.arch == built.arch
        assert co.version == built.version
        archs.add(co.arch)
        versions.add(co.version)
    assert n > 0
    print(f"{n} kernels matched llvm-readelf; archs {sorted(archs)}, versions {sorted(versions)}")


def test_cubin_matches_cuobjdump(all_cubin):
    n = 0
    for built in all_cubin:
        n += check_cubin(built.path)
        assert read_code_object(built.path).arch == built.arch
    assert n > 0


def test_package_objects_match_tools(extra_objects):
    for path in extra_objects:
        if path.suffix == ".hsaco":
            check_hsaco(path)
        else:
            check_cubin(path)


def test_kernel_descriptor_agrees_with_metadata(all_hsaco):
    for built in all_hsaco:
        co = read_code_object(built.path)
        for k in co.kernels.values():
            kd = k.descriptor
            assert kd.group_segment_fixed_size == k.shared_bytes
            assert kd.private_segment_fixed_size == k.scratch_bytes
            # The descriptor's kernarg size counts hidden arguments too (v5+).
            assert kd.kernarg_size >= k.param_bytes
            granule = vgpr_granule(co.arch)
            alloc = kd.allocated_vgprs(co.arch)
            assert alloc - granule < max(k.registers, 1) <= alloc, (k.name, alloc, k.registers)
            # GFX9 SGPRs: granulated in 16s, encoded as 2 * blocks - 1 (i.e. in units of 8).
            assert (kd.fields["GRANULATED_WAVEFRONT_SGPR_COUNT"] + 1) * 8 >= k.sgprs
            if k.scratch_bytes:
                assert kd.fields["ENABLE_PRIVATE_SEGMENT"] == 1
            assert kd.fields["ENABLE_WAVEFRONT_SIZE32"] == (k.wave_size == 32)
            if has_unified_vgprs(co.arch):
                arch_vgprs = k.details["arch_vgprs"]
                if k.agprs:  # AGPRs start right after the architected VGPRs
                    assert arch_vgprs + k.agprs == k.registers, k.name


def test_agprs_on_mfma(hip_objects):
    for built in hip_objects:
        co = read_code_object(built.path)
        if built.arch == "gfx906":
            assert "co_mfma" not in co.kernels
            continue
        mfma = co.kernels["co_mfma"]
        assert mfma.agprs > 0
        remark = built.remarks["co_mfma"]
        assert remark["AGPRs"] == mfma.agprs
        if built.arch == "gfx908":  # separate files: the count is the larger of the two
            assert mfma.registers == max(remark["VGPRs"], remark["AGPRs"])
        else:  # gfx90a: one file, AGPRs after the VGPRs rounded up to 4
            assert mfma.registers == -(-remark["VGPRs"] // 4) * 4 + remark["AGPRs"]


def test_code_object_versions(hip_objects, tvm_objects):
    seen = {read_code_object(b.path).version for b in hip_objects + tvm_objects
            if b.path.suffix == ".hsaco"}
    assert seen == {4, 5, 6}
