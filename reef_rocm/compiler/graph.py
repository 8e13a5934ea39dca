"""Relax model -> an ordered list of PrimFunc calls over named buffers (the "plan").

We run FuseTransposeMatmul (no weight-transpose kernels), then the target's default Relax
passes up to (not including) CallTIRRewrite: library dispatch, legalisation, fusion and
dlight scheduling, then the dataflow lowering that turns reshapes into views. The entry
function is then a flat list of ``call_tir`` bindings, reshape views and variable aliases.
We assign every call_tir result its own buffer (no StaticPlanBlockMemory: the storage
sharing it does would let a later kernel overwrite what an earlier one still reads if
re-run), which makes every buffer single-assignment.

Views (reshape, aliases, tuple items) share the id of the buffer they view: kernels take raw
pointers, so a view needs no allocation and no kernel; the manifest records the base
buffer's allocation shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reef_rocm.errors import ModelError, UnsupportedError
from reef_rocm.package.manifest import DTYPE_BYTES


@dataclass
class PlanBuffer:
    name: str
    dtype: str
    shape: list[int]
    role: str  # input | param | const | intermediate | output
    data: np.ndarray | None = None  # consts (and user-supplied weights)

    @property
    def nbytes(self) -> int:
        n = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
        return max(1, n * DTYPE_BYTES[self.dtype])


@dataclass
class PlanCall:
    """One call of a scheduled PrimFunc: its parameters bound to buffers or scalars."""

    func: str
    args: list[dict[str, Any]]  # per PrimFunc parameter: {"kind": "buffer", "id"} | scalar
    outputs: list[int]  # buffer ids the call defines


@dataclass
class Plan:
    buffers: list[PlanBuffer]
    calls: list[PlanCall]
    inputs: list[int]
    outputs: list[int]
    kernels_mod: Any  # tvm.IRModule of the scheduled PrimFuncs that are called
    extra: dict[str, Any] = field(default_factory=dict)


def _tensor_info(ty: Any) -> tuple[list[int], str]:
    shape = getattr(ty, "shape", None)
    vals = getattr(shape, "values", None)
    if vals is None:
        vals = shape.ty.values
    try:
        return [int(v) for v in vals], str(ty.dtype)
    except (TypeError, ValueError):
        raise UnsupportedError(
            f"dynamic shape {list(vals)} not supported (static shapes only)"
        ) from None


def relax_passes(target: Any) -> list[Any]:
    """The target's default Relax passes, minus CallTIRRewrite and memory planning."""
    import tvm
    from tvm import relax

    if target.kind.name == "cuda":
        from tvm.relax.backend.cuda import pipeline as p
    elif target.kind.name == "rocm":
        from tvm.relax.backend.rocm import pipeline as p
    else:
        raise UnsupportedError(f"no relax pipeline for {target.kind.name}")
    del tvm
    return (
        # linear layers legalise to a transpose of the weight plus a matmul: a whole kernel per
        # inference that copies the weight (VGG-19's 25088x4096 fc weight: 843 us on an H100,
        # its longest kernel). This stock pass makes them one NT-matmul kernel instead.
        [relax.transform.FuseTransposeMatmul()]
        + p.library_dispatch_passes(target)
        + p.legalize_passes(target)
        + [
            relax.transform.RewriteDataflowReshape(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
        ]
    )


def build_plan(
    mod: Any, target: Any, num_inputs: int, param_names: list[str], tuning: Any = None
) -> Plan:
    """Lower ``mod`` (entry "main": inputs then params) and list its calls in order.

    ``tuning`` (tune.apply.Tuning): its schedules replace dlight's where it has a record;
    ``plan.extra["tuned"]`` lists those PrimFuncs."""
    import tvm
    from tvm import relax

    tuned: list[str] = []
    if tuning is not None:
        from reef_rocm.compiler.tune.apply import lower_tuned

        lowered, tuned = lower_tuned(mod, target, tuning)
    else:
        with target:
            lowered = tvm.transform.Sequential(relax_passes(target))(mod)
    main = lowered["main"]
    call_tir = tvm.ir.Op.get("relax.call_tir")
    reshape_ops = {tvm.ir.Op.get("relax.reshape")}

    buffers: list[PlanBuffer] = []
    value: dict[Any, Any] = {}  # relax Var -> buffer id, or tuple of ids

    def new_buffer(b: PlanBuffer) -> int:
        buffers.append(b)
        return len(buffers) - 1

    for i, p in enumerate(main.params):
        shape, dtype = _tensor_info(p.ty)
        if i < num_inputs:
            role, name = "input", p.name
        else:
            role, name = "param", param_names[i - num_inputs]
        if dtype not in DTYPE_BYTES:
            raise UnsupportedError(f"{name}: dtype {dtype} not supported")
        value[p] = new_buffer(PlanBuffer(name, dtype, shape, role))

    def lookup(e: Any) -> Any:
        if isinstance(e, relax.Var):
            if e not in value:
                raise ModelError(f"use of {e.name} before definition")
            return value[e]
        if type(e).__name__ in ("Constant", "GenericConst"):
            arr = (e.value if hasattr(e, "value") else e.data).numpy()
            return new_buffer(
                PlanBuffer(f"const{len(buffers)}", str(arr.dtype), list(arr.shape), "const", arr)
            )
        if isinstance(e, relax.Tuple):
            return tuple(lookup(f) for f in e.fields)
        raise UnsupportedError(f"unsupported argument {type(e).__name__}: {e}")

    calls: list[PlanCall] = []
    used_funcs: dict[str, Any] = {}
    for block in main.body.blocks:
        for binding in block.bindings:
            var, v = binding.var, binding.value
            if isinstance(v, relax.Call) and v.op.same_as(call_tir):
                gv = v.args[0]
                ins = lookup(v.args[1])
                ins = list(ins) if isinstance(ins, tuple) else [ins]
                if any(isinstance(a, tuple) for a in ins):
                    raise UnsupportedError(f"{gv.name_hint}: nested tuple argument")
                out_types = list(v.ty_args)
                if len(out_types) == 1 and hasattr(out_types[0], "fields"):
                    out_types = list(out_types[0].fields)
                outs = []
                for j, t in enumerate(out_types):
                    shape, dtype = _tensor_info(t)
                    name = var.name if len(out_types) == 1 else f"{var.name}.{j}"
                    outs.append(new_buffer(PlanBuffer(name, dtype, shape, "intermediate")))
                args = [{"kind": "buffer", "id": b} for b in ins + outs]
                if len(v.args) > 2:  # tir_vars: scalar parameters after the outputs
                    for s in v.args[2].values:
                        args.append({"kind": "scalar", "dtype": str(s.dtype), "value": int(s)})
                calls.append(PlanCall(gv.name_hint, args, outs))
                used_funcs[gv.name_hint] = lowered[gv]
                value[var] = outs[0] if len(outs) == 1 else tuple(outs)
            elif isinstance(v, relax.Call) and any(v.op.same_as(o) for o in reshape_ops):
                value[var] = lookup(v.args[0])  # a view: same buffer
            elif isinstance(v, (relax.Var, relax.Tuple)) or type(v).__name__ in (
                "Constant",
                "GenericConst",
            ):
                value[var] = lookup(v)
            elif isinstance(v, relax.TupleGetItem):
                value[var] = lookup(v.tuple_value)[v.index]
            else:
                what = getattr(getattr(v, "op", None), "name", type(v).__name__)
                raise UnsupportedError(
                    f"operation {what} (binding {var.name}) is not a TIR kernel; only "
                    "models that lower entirely to TVM-generated kernels are supported"
                )

    ret = lookup(main.body.body)
    outputs = list(ret) if isinstance(ret, tuple) else [ret]
    for b in outputs:
        if buffers[b].role == "intermediate":
            buffers[b].role = "output"
    kernels_mod = tvm.IRModule({lowered.get_global_var(n): f for n, f in used_funcs.items()})
    inputs = [i for i, b in enumerate(buffers) if b.role == "input"]
    extra = {"tuned": [n for n in tuned if n in used_funcs]}
    return Plan(buffers, calls, inputs, outputs, kernels_mod, extra)
