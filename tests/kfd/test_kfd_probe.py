"""The binding's struct layouts, ioctl numbers and constants equal reef_kfd.h's.

A small C program is compiled against the uapi header (and the system's stock
<linux/kfd_ioctl.h> for AMDKFD_IOC_UPDATE_QUEUE) and prints what the C compiler thinks;
the Python binding must agree byte for byte.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from reef_rocm.rocm import kfd

ROOT = Path(__file__).resolve().parents[2]
UAPI = ROOT / "kfd_patch" / "include" / "uapi"

STRUCTS = {
    "reef_kfd_query_args": kfd.ReefKfdQueryArgs,
    "reef_kfd_kill_waves_args": kfd.ReefKfdKillWavesArgs,
    "reef_kfd_reset_queues_args": kfd.ReefKfdResetQueuesArgs,
    # stock amdkfd, from the system's <linux/kfd_ioctl.h> (linux-libc-dev)
    "kfd_ioctl_update_queue_args": kfd.KfdIoctlUpdateQueueArgs,
}
CONSTANTS = [
    "REEF_KFD_VERSION_MAJOR", "REEF_KFD_VERSION_MINOR", "REEF_KFD_VERSION",
    "REEF_KFD_OP_KILL_WAVES", "REEF_KFD_OP_RESET_PROCESS", "REEF_KFD_OP_RESET_QUEUES",
    "REEF_KFD_SCHED_HWS", "REEF_KFD_SCHED_HWS_NO_OVERSUB", "REEF_KFD_SCHED_NO_HWS",
    "REEF_KFD_SCHED_MES", "REEF_KFD_MECH_NONE", "REEF_KFD_MECH_HWS_UNMAP_RESET",
    "REEF_KFD_MECH_HQD_RESET", "REEF_KFD_MAX_RESET_QUEUES", "REEF_KFD_RESET_F_PROCESS",
    "REEF_KFD_IOCTL_BASE", "REEF_KFD_COMMAND_START", "REEF_KFD_COMMAND_END",
    "REEF_KFD_IOC_QUERY", "REEF_KFD_IOC_KILL_WAVES", "REEF_KFD_IOC_RESET_QUEUES",
    "AMDKFD_IOC_UPDATE_QUEUE",
]


def _probe_source() -> str:
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <linux/reef_kfd.h>",
             "#include <linux/kfd_ioctl.h>", "int main(void) {"]
    for cname, struct in STRUCTS.items():
        lines.append(f'printf("sizeof {cname} %zu\\n", sizeof(struct {cname}));')
        lines.append(f'printf("alignof {cname} %zu\\n", '
                     f'offsetof(struct {{ char c; struct {cname} s; }}, s));')
        for fname, _ in struct._fields_:
            lines.append(f'printf("offsetof {cname}.{fname} %zu\\n", '
                         f"offsetof(struct {cname}, {fname}));")
            lines.append(f'printf("sizeof {cname}.{fname} %zu\\n", '
                         f"sizeof(((struct {cname} *)0)->{fname}));")
    for name in CONSTANTS:
        lines.append(f'printf("const {name} %llu\\n", (unsigned long long)({name}));')
    lines.append("return 0; }")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (install gcc) to build the reef_kfd.h probe")
    if not Path("/usr/include/linux/kfd_ioctl.h").exists():
        pytest.skip("no /usr/include/linux/kfd_ioctl.h (install linux-libc-dev)")
    work = tmp_path_factory.mktemp("kfdprobe")
    (work / "probe.c").write_text(_probe_source())
    # kfd_ioctl.h includes <drm/drm.h> only for the __u* types. Use the real one where
    # libdrm-dev installed it, else a one-line stand-in that supplies those types; the
    # layouts checked come from kfd_ioctl.h itself either way.
    include_dirs = [f"-I{UAPI}"]
    libdrm = Path("/usr/include/libdrm/drm.h")
    if not Path("/usr/include/drm/drm.h").exists():
        (work / "drm").mkdir()
        if libdrm.exists():
            (work / "drm" / "drm.h").symlink_to(libdrm)
        else:
            (work / "drm" / "drm.h").write_text("#include <linux/types.h>\n")
        include_dirs.append(f"-I{work}")
    # -Werror: the header must compile cleanly with the system's <linux/*.h>
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *include_dirs,
                    "-o", str(work / "probe"), str(work / "probe.c")], check=True)
    out = subprocess.run([str(work / "probe")], check=True, capture_output=True,
                         text=True).stdout
    result = {}
    for line in out.splitlines():
        kind, name, value = line.split()
        result[f"{kind} {name}"] = int(value)
    return result


@pytest.mark.parametrize("cname", STRUCTS)
def test_struct_layout_matches_header(probe: dict[str, int], cname: str) -> None:
    struct = STRUCTS[cname]
    assert ctypes.sizeof(struct) == probe[f"sizeof {cname}"]
    assert ctypes.alignment(struct) == probe[f"alignof {cname}"]
    for fname, ctype in struct._fields_:
        assert getattr(struct, fname).offset == probe[f"offsetof {cname}.{fname}"], fname
        assert ctypes.sizeof(ctype) == probe[f"sizeof {cname}.{fname}"], fname
    # every field of the C struct is covered: the sizes add up with no hidden padding
    assert sum(ctypes.sizeof(t) for _, t in struct._fields_) == ctypes.sizeof(struct)


@pytest.mark.parametrize("name", CONSTANTS)
def test_constant_matches_header(probe: dict[str, int], name: str) -> None:
    assert getattr(kfd, name) == probe[f"const {name}"]


def test_ioctl_numbers_are_outside_upstream_and_amd_ranges() -> None:
    for req in (kfd.REEF_KFD_IOC_QUERY, kfd.REEF_KFD_IOC_KILL_WAVES,
                kfd.REEF_KFD_IOC_RESET_QUEUES):
        nr = req & 0xFF
        assert (req >> 8) & 0xFF == ord("K")
        assert kfd.REEF_KFD_COMMAND_START <= nr < kfd.REEF_KFD_COMMAND_END
        assert not 0x01 <= nr < 0x80  # upstream amdkfd grows from 0x01
        assert not 0x80 <= nr <= 0x9F  # AMD amdgpu-dkms's non-upstream block
