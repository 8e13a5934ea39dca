"""The model package format: what the compiler writes and the runtime reads (no TVM here).

``manifest`` is the schema (buffers, launch records per variant, DKP launch info), ``weights``
the seeded generator of parameter contents, ``files`` the on-disk package (code objects,
reference tensors). Compiler and runtime both depend on this package, never on each other.
"""

from reef_rocm.package.files import ModelPackage, find_packages
from reef_rocm.package.manifest import Buffer, LaunchRecord, Manifest, Variant
from reef_rocm.package.weights import generate

__all__ = [
    "Buffer",
    "LaunchRecord",
    "Manifest",
    "ModelPackage",
    "Variant",
    "find_packages",
    "generate",
]
