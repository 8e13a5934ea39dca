"""Run compiled model packages kernel by kernel on a reef_rocm.gpu Device (no TVM here)."""

from reef_rocm.runtime.executor import ModelInstance, write_profile
from reef_rocm.runtime.package import ModelPackage, find_packages
from reef_rocm.runtime.weights import generate

__all__ = ["ModelInstance", "ModelPackage", "find_packages", "generate", "write_profile"]
