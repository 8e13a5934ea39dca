"""Fixtures of the compiler tests: the session's build cache for the transformer's workload
builds, and the GPU-fixture builder from tools/."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def _transform_build_cache(build_cache):
    """transform_workloads' CUDA/ROCm builds go through the session's cache (each distinct
    module is compiled once per session, and reused by the next session on this machine).
    Imported here, not at the top, so collection works without TVM (the tests skip)."""
    if importlib.util.find_spec("tvm") is None:
        yield
        return
    import transform_workloads

    transform_workloads.use_build_cache(build_cache)
    yield
    transform_workloads.use_build_cache(None)


@pytest.fixture(scope="session")
def fixture_builder() -> ModuleType:
    """tools/build_transform_fixtures.py as a module (it is a script, not a package)."""
    path = REPO / "tools" / "build_transform_fixtures.py"
    spec = importlib.util.spec_from_file_location("build_transform_fixtures", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
