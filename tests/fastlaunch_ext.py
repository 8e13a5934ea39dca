"""The C launcher extension for CPU tests: the installed build (``pip install -e .`` builds it
through setup.py) or, where there is none, one compiled here from reef_rocm/gpu/_fastlaunch.c
with warnings as errors. A ctypes callback with cuLaunchKernel's signature then stands in for
the driver, so the C code is tested without a GPU."""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "reef_rocm" / "gpu" / "_fastlaunch.c"

# cuLaunchKernel / hipModuleLaunchKernel: (f, gx, gy, gz, bx, by, bz, shared, stream,
# params, extra) -> status
LAUNCH_SIG = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, *[ctypes.c_uint] * 7, *[ctypes.c_void_p] * 3
)


def _current(mod: ModuleType) -> bool:
    """A build from this source (an older one has no Span)."""
    return hasattr(mod, "Launcher") and hasattr(mod, "Span")


def compile_extension(out_dir: Path) -> ModuleType:
    """Compile _fastlaunch.c into ``out_dir`` and load it; skips the test without a C
    compiler or Python headers (CI has both: pip install -e . needs them too)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    inc = sysconfig.get_paths()["include"]
    if cc is None or not (Path(inc) / "Python.h").exists():
        pytest.skip("no C compiler or Python.h: the C launcher cannot be built here")
    so = out_dir / f"_fastlaunch{sysconfig.get_config_var('EXT_SUFFIX')}"
    flags = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
             "-Wno-missing-field-initializers", "-Werror", "-shared", "-fPIC"]  # fmt: skip
    res = subprocess.run(
        [cc, *flags, f"-I{inc}", "-o", str(so), str(SOURCE)], capture_output=True, text=True
    )
    assert res.returncode == 0, f"_fastlaunch.c does not compile cleanly:\n{res.stderr}"
    spec = importlib.util.spec_from_file_location("reef_rocm.gpu._fastlaunch", so)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def extension(out_dir: Path) -> ModuleType:
    try:
        from reef_rocm.gpu import _fastlaunch
    except ImportError:
        return compile_extension(out_dir)
    return _fastlaunch if _current(_fastlaunch) else compile_extension(out_dir)


def use_extension(mod: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Point reef_rocm.gpu.fastlaunch at ``mod`` for one test; returns gpu.fastlaunch."""
    from reef_rocm.gpu import fastlaunch

    monkeypatch.delenv("REEF_NO_FASTLAUNCH", raising=False)
    monkeypatch.setattr(fastlaunch, "_Launcher", mod.Launcher)
    monkeypatch.setattr(fastlaunch, "_Span", mod.Span)
    return fastlaunch


def entry_of(callback: ctypes._CFuncPtr) -> int:
    """The C address of a ctypes callback: the "driver entry point" the launchers call."""
    return ctypes.cast(callback, ctypes.c_void_p).value or 0
