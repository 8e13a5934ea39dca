"""Model packages a server may load: directories inside its --packages directory, named by
path or found by model name + target (what ``reef compile --out DIR`` writes there)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reef_rocm.errors import ModelError, PackageError, ReefError
from reef_rocm.package.files import ModelPackage, find_packages
from reef_rocm.package.manifest import Manifest


class OutsideCatalog(ReefError):
    """A package path outside the server's package directory."""


class PackageCatalog:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise PackageError(f"--packages {root}: not a directory")

    def by_path(self, path: str) -> ModelPackage:
        """A package directory named relative to the root, or absolute inside it (symlinks
        resolved first, so a link cannot lead out)."""
        if not path:
            raise PackageError("empty package path")
        p = Path(path)
        full = (p if p.is_absolute() else self.root / p).resolve()
        if full != self.root and self.root not in full.parents:
            raise OutsideCatalog(
                f"{path}: outside the server's package directory {self.root}; the server loads "
                "only packages inside it"
            )
        if not full.is_dir():
            raise ModelError(f"no package {path!r} in {self.root}")
        return ModelPackage.load(full)

    def by_name(self, name: str, target: str, device_arch: str) -> ModelPackage:
        """The package of model ``name`` for ``target`` (e.g. "cuda:sm_90"); an empty target
        means the package built for ``device_arch``."""
        if not name:
            raise ModelError("empty model name")
        found: list[tuple[Path, Manifest]] = []
        names: set[str] = set()
        for d in find_packages(self.root):
            try:
                m = Manifest.load(d)
            except PackageError:
                continue  # a broken neighbour must not hide the package asked for
            names.add(str(m.model.get("name")))
            if m.model.get("name") != name:
                continue
            if target and m.target.get("name") != target:
                continue
            if not target and m.target.get("arch") != device_arch:
                continue
            found.append((d, m))
        if not found:
            want = f"target {target}" if target else f"this GPU's arch {device_arch}"
            have = ", ".join(sorted(names)) or "none"
            raise ModelError(
                f"no package of model {name!r} for {want} in {self.root} (models there: {have})"
            )
        if len(found) > 1:
            raise ModelError(
                f"model {name!r}: several packages match ({', '.join(str(d) for d, _ in found)}); "
                "load one by path"
            )
        return ModelPackage.load(found[0][0])


def check_target(pkg: ModelPackage, device: Any) -> None:
    """A package runs only on the arch it was built for."""
    arch = pkg.manifest.target.get("arch")
    if arch and arch != device.info.arch:
        raise PackageError(
            f"package {pkg.name} is built for {pkg.manifest.target.get('name', arch)}; "
            f"this GPU is {device.info.arch} ({device.info.name})"
        )
