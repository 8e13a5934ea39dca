"""The DKP profile: per kernel of every model in a DKP build, its plain time and its time
through the dispatcher with each proxy kernel, measured on the target GPU.

The padded launch costs the RT kernel something (indirect calls, the ABI's register saving,
persistent blocks taking virtual blocks one at a time; docs/dkp.md "Measured so far"), so the
scheduler pads an RT kernel only where the profile says its dispatcher time with the selected
proxy is within a tolerance of its plain time (``SchedOptions.dkp_tolerance``). The padded time
is the RT kernel alone through the dispatcher on the RT/BE split the selection would give it
(BE-side blocks help with its virtual blocks: no BE work), so it is the dispatcher's own cost;
interference from BE blocks on the other CUs (memory bandwidth, L2) is not in it.

Written beside the build as ``dkp_profile-<arch>.json`` (``profile_path``) by
``tools/dkp_profile.py`` (GPU); the kernel times also feed the selection's rule 1
(``DkpProfile.plain_profile``), so a scheduler with a DKP build needs no other profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.errors import GpuError, PackageError, UnsupportedError

KIND = "reef-dkp-profile"
OUT_OF_RESOURCES = 701  # CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: budget x threads > register file


def profile_path(build_dir: str | Path, arch: str) -> Path:
    return Path(build_dir) / f"dkp_profile-{arch}.json"


@dataclass
class DkpProfile:
    """A loaded DKP profile. ``models``: model name -> one record per kernel ``{"index",
    "name", "plain_us", "padded_us": {budget (str): us or None}}``."""

    path: Path
    arch: str
    device: str
    sources: dict[str, str]  # model -> digest of the kernel source the build compiled
    models: dict[str, list[dict[str, Any]]]

    def has(self, model: str) -> bool:
        return model in self.models

    def plain_profile(self, model: str) -> dict[str, Any]:
        """The model's plain kernel times in ``reef profile``'s shape (``select.
        package_profiles`` takes it)."""
        return {"kernels": [{"name": k["name"], "us_median": k["plain_us"]}
                            for k in self.models[model]]}  # fmt: skip

    def padded_within(self, model: str, kernel: int, budget: int, tolerance: float) -> bool:
        """True when kernel ``kernel`` of ``model`` through the dispatcher with the proxy of
        ``budget`` registers took at most ``(1 + tolerance)`` times its plain time."""
        rows = self.models.get(model)
        if rows is None or not 0 <= kernel < len(rows):
            return False
        k = rows[kernel]
        padded = k["padded_us"].get(str(budget))
        return padded is not None and padded <= k["plain_us"] * (1.0 + tolerance)


def load_dkp_profile(build_dir: str | Path, arch: str) -> DkpProfile | None:
    """The build's profile for ``arch``, or None when there is none."""
    p = profile_path(build_dir, arch)
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise PackageError(f"{p}: unreadable DKP profile: {e}") from None
    if doc.get("kind") != KIND or not isinstance(doc.get("models"), dict):
        raise PackageError(f"{p}: not a DKP profile (kind {doc.get('kind')!r})")
    return DkpProfile(p, str(doc.get("arch")), str(doc.get("device", "")),
                      dict(doc.get("sources", {})), doc["models"])  # fmt: skip


def timed_us(device: Any, stream: Any, fn: Any, repeats: int) -> float:
    """Median us of ``fn(stream)`` between two events (after one untimed call)."""
    a, b = device.create_event(), device.create_event()
    try:
        fn(stream)
        stream.synchronize()
        out = []
        for _ in range(repeats):
            a.record(stream)
            fn(stream)
            b.record(stream)
            b.synchronize()
            out.append(a.elapsed_ms(b) * 1e3)
        return float(np.median(out))
    finally:
        a.close()
        b.close()


def measure_model(
    device: Any, runtime: Any, inst: Any, stream: Any, repeats: int = 15, progress: Any = None
) -> list[dict[str, Any]]:
    """One record per kernel of ``inst`` (a plain ModelInstance of a model in the runtime's
    build): plain us, then us through the dispatcher with every proxy, on the split
    ``Selector.rt_cus`` gives it (None where that proxy cannot launch it)."""
    from reef_rocm.dkp.select import Selector, package_profiles

    build = runtime.build
    name = inst.package.name
    plain = [timed_us(device, stream, lambda s, i=i: inst.launch(i, s), repeats)
             for i in range(inst.num_kernels)]  # fmt: skip
    doc = {"kernels": [{"name": k.name, "us_median": us}
                       for k, us in zip(inst.kernels, plain, strict=True)]}  # fmt: skip
    prof = package_profiles(inst.package, doc, build)
    sel = Selector(build.arch, runtime.compute_units, build.proxies)
    rows = []
    for i, kp in enumerate(prof):
        table = runtime.table_for(sel.rt_cus(kp), stream)
        padded: dict[str, float | None] = {}
        for p in build.proxies:
            try:
                pad = runtime.bind(inst, i, None, 0, None, p, stream)
                pad.set_table(table)
                padded[str(p.budget)] = timed_us(device, stream, pad.launch, repeats)
            except UnsupportedError:
                padded[str(p.budget)] = None  # e.g. shared memory over the device's limit
            except GpuError as e:
                if e.code != OUT_OF_RESOURCES:
                    raise
                padded[str(p.budget)] = None
        rows.append({"index": i, "name": kp.name, "blocks": kp.blocks,
                     "threads": kp.threads, "rt_cus": sel.rt_cus(kp), "plain_us": plain[i],
                     "padded_us": padded})  # fmt: skip
        if progress is not None:
            progress(name, i, len(prof))
    runtime.forget(inst)
    return rows


def measure_build(
    device: Any, build: Any, packages: list[Any], repeats: int = 15, out: str | Path | None = None,
    progress: Any = None,
) -> Path:  # fmt: skip
    """Measure every package (ModelPackage of a model in ``build``) and write the profile
    (default: beside the build); models already in an existing profile file are kept."""
    from reef_rocm.dkp.launch import DkpRuntime
    from reef_rocm.runtime.executor import ModelInstance, write_profile

    path = Path(out) if out is not None else profile_path(build.directory, device.info.arch)
    old = load_dkp_profile(build.directory, device.info.arch) if out is None else None
    models = dict(old.models) if old is not None else {}
    sources = dict(old.sources) if old is not None else {}
    sources.update({p.name: build.sources.get(p.name) for p in packages})
    for pkg in packages:
        build.check_package(pkg)
    with DkpRuntime(device, build) as rt:
        s = device.create_stream()
        try:
            rt.probe_hw_ids(s)
            for pkg in packages:
                with ModelInstance(device, pkg) as inst:
                    for k, x in enumerate(pkg.reference_inputs()):
                        inst.set_input(k, x, s)
                    models[pkg.name] = measure_model(device, rt, inst, s, repeats, progress)
        finally:
            s.synchronize()
            s.close()
    doc = {"kind": KIND, "arch": device.info.arch, "device": device.info.name,
           "compute_units": device.info.compute_units, "build": str(build.directory),
           "sources": sources,
           "budgets": [p.budget for p in build.proxies], "repeats": repeats,
           "note": "event-timed medians; padded = the RT kernel alone through the dispatcher "
                   "on its RT/BE split (no BE work)", "models": models}  # fmt: skip
    return write_profile(doc, path)
