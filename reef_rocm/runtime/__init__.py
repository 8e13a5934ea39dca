"""Run compiled model packages kernel by kernel on a reef_rocm.gpu Device (no TVM here)."""

from reef_rocm.runtime.executor import ModelInstance, write_profile

__all__ = ["ModelInstance", "write_profile"]
