"""Model sources: zoo names, ONNX files, torch.export programs -> one Relax entry "main"
(inputs first, then parameters), with each parameter either an init spec for the seeded
generator (zoo) or real data (user models)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.compiler.zoo import ZOO, TensorSpec, zoo_model
from reef_rocm.errors import ModelError, UnsupportedError


@dataclass
class ModelSource:
    name: str
    kind: str  # "zoo" | "onnx" | "torch"
    mod: Any  # relax IRModule, entry "main"
    inputs: list[TensorSpec]
    params: list[TensorSpec]
    param_data: dict[str, np.ndarray] | None  # real weights (user models); None: generated
    content_hash: str  # of the model definition (graph + weights/specs)


def _specs_hash(inputs: list[TensorSpec], params: list[TensorSpec]) -> str:
    specs = [(s.name, list(s.shape), s.dtype, s.init) for s in inputs + params]
    return hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()


def load_model(model: str) -> ModelSource:
    """``model``: a zoo name, a path to a .onnx file or a torch.export .pt2 file."""
    path = Path(model)
    if path.suffix == ".onnx" or (path.is_file() and path.suffix != ".pt2"):
        if not path.is_file():
            raise ModelError(f"{model}: no such file")
        return load_onnx(path)
    if path.suffix == ".pt2":
        if not path.is_file():
            raise ModelError(f"{model}: no such file")
        return load_torch_export(path)
    zm = zoo_model(model)
    mod, inputs, params = zm.build()
    h = hashlib.sha256(
        (mod.script(show_meta=False) + _specs_hash(inputs, params)).encode()
    ).hexdigest()
    return ModelSource(zm.name, "zoo", mod, inputs, params, None, h)


def _input_init(dtype: str) -> dict[str, Any]:
    # reference inputs for user models: floats in [-1, 1), integers in [0, 2) (safe for
    # index/mask inputs of unknown range)
    if dtype.startswith("float"):
        return {"kind": "uniform", "bound": 1.0}
    return {"kind": "randint", "high": 2}


def _from_relax_with_params(
    name: str, kind: str, mod: Any, params: list[tuple[str, np.ndarray]], file_hash: str
) -> ModelSource:
    """A frontend's module whose "main" takes (inputs..., params...) plus the param data."""
    main = mod["main"]
    n_in = len(main.params) - len(params)
    if n_in < 1:
        raise ModelError(f"{name}: model has no inputs")
    from reef_rocm.compiler.graph import _tensor_info

    inputs = []
    for p in list(main.params)[:n_in]:
        shape, dtype = _tensor_info(p.ty)
        inputs.append(TensorSpec(p.name, tuple(shape), dtype, _input_init(dtype)))
    specs = [TensorSpec(n, tuple(a.shape), str(a.dtype), None) for n, a in params]
    mod["main"] = main.with_attr("num_input", n_in)
    return ModelSource(name, kind, mod, inputs, specs, dict(params), file_hash)


def load_onnx(path: Path) -> ModelSource:
    import onnx

    raw = path.read_bytes()
    try:
        model = onnx.load_model_from_string(raw)
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises several unrelated types for corrupt files
        raise ModelError(f"{path}: not a valid ONNX model: {e}") from None
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.onnx import from_onnx

    shapes = {}
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            raise UnsupportedError(
                f"{path}: input {inp.name} has a dynamic shape; export with static shapes"
            )
        shapes[inp.name] = [d.dim_value for d in dims]
    try:
        mod = from_onnx(model, shape_dict=shapes, keep_params_in_input=True)
    except Exception as e:  # the importer raises bare errors for unsupported operators
        raise ModelError(f"{path}: ONNX import failed: {e}") from None
    mod, params = detach_params(mod)
    values = params.get("main", [])
    plist = [(str(k), v.numpy()) for k, v in zip(_param_names(mod), values, strict=True)]
    return _from_relax_with_params(path.stem, "onnx", mod, plist, hashlib.sha256(raw).hexdigest())


def _param_names(mod: Any) -> list[str]:
    main = mod["main"]
    n_in = int(main.attrs["num_input"]) if main.attrs and "num_input" in main.attrs else 0
    return [p.name for p in list(main.params)[n_in:]]


def load_torch_export(path: Path) -> ModelSource:
    try:
        import torch
    except ImportError:
        raise UnsupportedError(f"{path}: torch is not installed (pip install torch)") from None
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise ModelError(f"{path}: not a torch.export program: {e}") from None
    return from_exported_program(program, path.stem, hashlib.sha256(path.read_bytes()).hexdigest())


def from_exported_program(program: Any, name: str, content_hash: str) -> ModelSource:
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.torch import from_exported_program as import_ep

    try:
        mod = import_ep(program, keep_params_as_input=True)
    except Exception as e:
        raise ModelError(f"{name}: torch.export import failed: {e}") from None
    mod, params = detach_params(mod)
    values = params.get("main", [])
    plist = [(str(k), v.numpy()) for k, v in zip(_param_names(mod), values, strict=True)]
    return _from_relax_with_params(name, "torch", mod, plist, content_hash)


def zoo_names() -> list[str]:
    return list(ZOO)
