"""Scheduled PrimFuncs -> device kernels: launch shapes, argument lists and a code object.

We lower the scheduled PrimFuncs with TVM's own TIR pipeline and watch it with a pass
instrument: right after SplitHostDevice each PrimFunc is a host function that still has its
original buffer parameters and calls its device kernel(s) with ``call_ffi_kernel(name,
args..., launch values...)``. Reading those calls gives, per kernel and in order, which
PrimFunc parameter each pointer argument is and the grid/block/dynamic-shared-memory values,
without re-deriving anything TVM already computed. The device half then goes through TVM's
device finalisation and codegen; CUDA source is compiled to a cubin with nvcc, AMD code
objects come from TVM's LLVM (linked by us, see codegen.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reef_rocm.errors import UnsupportedError
from reef_rocm.package.manifest import DKP_ROLES, DkpLaunch, LaunchRecord

PREEMPT_FLAG = "reef_preempt_flag"
COMPLETION_SLOT = "reef_completion_slot"
POLL_EVERY = "reef_poll_every"  # the preemptible variants' poll interval (``_i`` suffixed)
# base names of the DKP parameters, in the order transform.dkp_func lists them in each
# kernel's "reef.dkp" entry ("params": [begin, count, grid]); only used to check that order
_DKP_BASE_NAMES = ("reef_vblock_begin", "reef_vblock_count", "reef_grid_blocks")
_LAUNCH_DIMS = (
    "blockIdx.x",
    "blockIdx.y",
    "blockIdx.z",
    "threadIdx.x",
    "threadIdx.y",
    "threadIdx.z",
)
_DYN_SHMEM = "tirx.use_dyn_shared_memory"


@dataclass
class DeviceBuild:
    kernels_by_func: dict[str, list[dict[str, Any]]]  # PrimFunc -> kernels (params by index)
    device_mod: Any  # finalised device IRModule, for codegen
    target: Any


def _strip(mod: Any) -> Any:
    """Drop the per-function target (dlight stamps one without a host) and make every
    PrimFunc a public symbol so SplitHostDevice/MakePackedAPI treat it as an entry."""
    import tvm

    funcs = {}
    for gv, f in mod.functions.items():
        if isinstance(f, tvm.tirx.PrimFunc):
            if "target" in f.attrs:
                f = f.without_attr("target")
            f = f.with_attr("global_symbol", gv.name_hint)
        funcs[gv] = f
    return tvm.IRModule(funcs)


def _walk(node: Any, types: Any, fn: Any, order: str = "pre") -> None:
    import tvm_ffi

    tvm_ffi.structural_walk(node, (types, fn), order=order)


def _decl_map(body: Any) -> dict[Any, Any]:
    """buffer var -> the var whose data it aliases (DeclBuffer(data=buffer_data(v)))."""
    import tvm

    out: dict[Any, Any] = {}
    buffer_data = tvm.ir.Op.get("tirx.buffer_data")

    def visit(d: Any) -> None:
        data = d.data
        if isinstance(data, tvm.ir.Call) and data.op.same_as(buffer_data):
            out[d.buffer] = data.args[0]
        elif data is not None:
            out[d.buffer] = data

    _walk(body, tvm.tirx.DeclBuffer, visit)
    return out


def _resolve(var: Any, decls: dict[Any, Any], roots: list[Any]) -> int | None:
    seen = 0
    while seen < 64:
        for i, r in enumerate(roots):
            if var.same_as(r):
                return i
        if var not in decls:
            return None
        var = decls[var]
        seen += 1
    return None


def _const_int(e: Any, what: str) -> int:
    try:
        return int(e)
    except (TypeError, ValueError):
        raise UnsupportedError(f"{what} is not a constant ({e}); static shapes only") from None


def _host_kernel_calls(host: Any, device_funcs: dict[str, Any]) -> list[dict[str, Any]]:
    """Kernel launches of one host PrimFunc, in program order."""
    import tvm

    ffi_kernel = tvm.ir.Op.get("tirx.call_ffi_kernel")
    buffer_data = tvm.ir.Op.get("tirx.buffer_data")
    decls = _decl_map(host.body)
    params = list(host.params)
    loops: list[Any] = []
    _walk(host.body, tvm.tirx.For, loops.append)
    calls: list[Any] = []
    _walk(host.body, tvm.ir.Call, lambda c: calls.append(c) if c.op.same_as(ffi_kernel) else None)
    if calls and loops:
        raise UnsupportedError(f"{host}: kernel launches inside a host loop")

    kernels = []
    for c in calls:
        name = str(c.args[0].value)
        dev = device_funcs[name]
        n_params = len(dev.params)
        launch_names = [str(s) for s in c.attrs.launch_params]
        values = list(c.args[1 + n_params :])
        if len(values) != len(launch_names):
            raise UnsupportedError(f"{name}: unexpected launch arguments {launch_names}")
        launch: dict[str, Any] = {}
        for k, v in zip(launch_names, values, strict=True):
            idx = _resolve(v, {}, params) if type(v).__name__ == "Var" else None
            # a launch dimension given by a scalar parameter (the DKP variant's physical grid)
            launch[k] = {"param": idx} if idx is not None else _const_int(v, f"{name} {k}")
        unknown = set(launch) - set(_LAUNCH_DIMS) - {_DYN_SHMEM}
        if unknown:
            raise UnsupportedError(f"{name}: unsupported launch parameters {sorted(unknown)}")
        args = []
        for a in c.args[1 : 1 + n_params]:
            if isinstance(a, tvm.ir.Call) and a.op.same_as(buffer_data):
                idx = _resolve(a.args[0], decls, params)
                if idx is None:
                    raise UnsupportedError(
                        f"{name}: pointer argument {a} is not a parameter of {host}; kernels "
                        "that need a host-allocated workspace are not supported"
                    )
                args.append({"param": idx})
            elif type(a).__name__ == "Var":
                idx = _resolve(a, {}, params)
                if idx is None:
                    raise UnsupportedError(f"{name}: scalar argument {a} is not a parameter")
                args.append({"param": idx})
            else:  # a constant the lowering folded in
                args.append({"scalar": _const_int(a, f"{name} argument"), "dtype": str(a.dtype)})
        loads, stores = _accessed_params(dev)
        kernels.append(
            {"name": name, "launch": launch, "args": args, "loads": loads, "stores": stores}
        )
    return kernels


def _accessed_params(dev: Any) -> tuple[list[int], list[int]]:
    """(loads, stores): indices of the device kernel's pointer parameters whose incoming
    contents it reads, and those it writes to.

    Stores: buffer stores, and calls that take a parameter's address (atomics, intrinsics
    that store through a pointer: ``tvm_access_ptr`` by its read/write mask, any other call
    as read and write; the coherent flag read, an ``atomic_add`` of 0 or ``__ldcv``, only
    reads). Loads: the same calls, and buffer loads except those of an element this kernel
    stored earlier in program order at a structurally equal index (a reduction that
    initialises its output and then accumulates into it, as dlight's fallback schedule
    does, reads only what it wrote itself, so a re-run starts afresh). The walk is post
    order, which is program order here: a store's value is read before the store.
    """
    import tvm
    import tvm_ffi

    decls = _decl_map(dev.body)
    params = list(dev.params)
    loads: set[int] = set()
    stores: set[int] = set()
    address_of = tvm.ir.Op.get("tirx.address_of")
    access_ptr = tvm.ir.Op.get("tirx.tvm_access_ptr")
    atomic_add = tvm.ir.Op.get("tirx.atomic_add")
    load_type = type(tvm.tirx.decl_buffer((1,), "int8")[0])  # BufferLoad (ir.TensorLoad)
    address_loads: list[Any] = []  # loads that only name an address for a call
    stored: dict[int, list[Any]] = {}  # param -> indices stored so far

    def param_of(x: Any) -> int | None:
        """The parameter whose memory a call argument points into (``&buf[i]`` or the
        pointer itself); a loaded value is not an address."""
        if isinstance(x, tvm.ir.Call) and x.op.same_as(address_of):
            if isinstance(x.args[0], load_type):
                return _resolve(x.args[0].source, decls, params)
            return None
        if type(x).__name__ == "Var":
            return _resolve(x, {}, params)
        return None

    def visit_call(c: Any) -> None:
        if c.op.same_as(access_ptr):
            idx = _resolve(c.args[1], {}, params)
            mask = int(c.args[4]) if len(c.args) > 4 else 3
            if idx is not None:
                if mask & 1:
                    loads.add(idx)
                if mask & 2:
                    stores.add(idx)
            return
        read_only = (
            c.op.same_as(atomic_add)
            and isinstance(c.args[1], tvm.tirx.IntImm)
            and int(c.args[1].value) == 0
        ) or (getattr(c.op, "name", "") == "tirx.call_extern" and str(c.args[0]) == "__ldcv")
        for a in c.args:
            idx = param_of(a)
            if idx is None:
                continue
            loads.add(idx)
            if not read_only:
                stores.add(idx)

    def visit_store(st: Any) -> None:
        idx = _resolve(st.buffer, decls, params)
        if idx is not None:
            stores.add(idx)
            stored.setdefault(idx, []).append(st.indices)

    def visit_load(x: Any) -> None:
        idx = _resolve(x.source, decls, params)
        if idx is None or any(x.same_as(a) for a in address_loads):
            return
        own = any(tvm_ffi.structural_equal(x.indices, i) for i in stored.get(idx, ()))
        if not own:
            loads.add(idx)

    # address_of(buf[i]) arguments first, so that the main walk can skip them as loads
    _walk(
        dev.body, tvm.ir.Call,
        lambda c: address_loads.append(c.args[0]) if c.op.same_as(address_of) else None,
    )  # fmt: skip
    tvm_ffi.structural_walk(
        dev.body,
        [(tvm.tirx.BufferStore, visit_store), (load_type, visit_load), (tvm.ir.Call, visit_call)],
        order="post",
    )
    return sorted(loads), sorted(stores)


def lower_kernels(kernels_mod: Any, target: Any) -> DeviceBuild:
    """Lower scheduled PrimFuncs with TVM's TIR pipeline; capture host/device split."""
    import tvm
    from tvm.tirx.build import split_host_device_mods

    mod = _strip(kernels_mod)
    mod = tvm.tirx.transform.BindTarget(target.with_host(tvm.target.Target("llvm")))(mod)
    pipeline, _, finalize_device = tvm.tirx.get_tir_pipeline("default")
    captured: dict[str, Any] = {}

    @tvm.instrument.pass_instrument
    class _AfterSplit:
        def run_after_pass(self, m: Any, info: Any) -> None:
            if info.name.endswith("SplitHostDevice"):
                captured["mod"] = m

    with tvm.transform.PassContext(instruments=[_AfterSplit()]):
        lowered = pipeline(mod)
    split = captured["mod"]
    device_funcs = {
        gv.name_hint: f
        for gv, f in split.functions.items()
        if int(f.attrs.get("calling_conv", 0)) == 2
    }
    by_func = {}
    for gv in kernels_mod.functions:
        by_func[gv.name_hint] = _host_kernel_calls(split[gv.name_hint], device_funcs)
    _, device_mods = split_host_device_mods(lowered)
    if len(device_mods) != 1:
        raise UnsupportedError(f"expected one device target, got {len(device_mods)}")
    ((dev_target, dev_mod),) = device_mods.items()
    dev_mod = finalize_device()(dev_mod)
    return DeviceBuild(by_func, dev_mod, dev_target)


def bind_kernels(
    calls: list[Any], build: DeviceBuild, param_names: dict[str, list[str]],
    param_dtypes: dict[str, list[str]] | None = None,
    dkp_infos: dict[str, list[dict[str, Any]]] | None = None,
) -> list[LaunchRecord]:  # fmt: skip
    """Launch records in execution order with arguments bound to buffers/scalars/reef params.

    ``param_names[func]`` are the PrimFunc's parameter names (after any transform), used to
    recognise the preemption transform's extra parameters; ``param_dtypes[func]`` their
    dtypes (recorded for reef_ scalars, which the launcher packs). ``dkp_infos[func]`` is
    the decoded ``reef.dkp`` attribute of a DKP-ready PrimFunc (transform.dkp_info): its
    kernels get a ``dkp`` entry and, instead of a grid of 0, the default launch of one
    physical block per virtual block.
    """
    out: list[LaunchRecord] = []
    for call in calls:
        names = param_names[call.func]
        dtypes = (param_dtypes or {}).get(call.func)
        for k in build.kernels_by_func[call.func]:
            args: list[dict[str, Any]] = []
            for a in k["args"]:
                if "scalar" in a:
                    args.append({"kind": "scalar", "dtype": a["dtype"], "value": a["scalar"]})
                    continue
                i = a["param"]
                pname = names[i]
                if pname == PREEMPT_FLAG:
                    args.append({"kind": "preempt_flag"})
                elif pname == COMPLETION_SLOT:
                    args.append({"kind": "completion_slot"})
                elif pname.startswith("reef_"):
                    dtype = dtypes[i] if dtypes is not None else "int32"
                    args.append({"kind": "reef_param", "name": pname, "dtype": dtype})
                elif i < len(call.args):
                    args.append(dict(call.args[i]))
                else:
                    raise UnsupportedError(f"{call.func}: parameter {pname} has no binding")
            dims: dict[str, int] = {}
            launch_params: dict[str, str] = {}
            for key, v in k["launch"].items():
                if isinstance(v, dict):  # symbolic: record the parameter; value set below
                    launch_params[key] = names[v["param"]]
                else:
                    dims[key] = v
            block = [dims.get(f"threadIdx.{d}", 1) for d in "xyz"]
            dkp = None
            if launch_params:
                infos = (dkp_infos or {}).get(call.func)
                if infos is None or set(launch_params) != {"blockIdx.x"}:
                    raise UnsupportedError(
                        f"{k['name']}: launch {launch_params} given by parameters, but "
                        f"{call.func} has no DKP metadata (reef.dkp) saying their values"
                    )
                dkp = _dkp_launch(k["name"], call.func, launch_params["blockIdx.x"], infos, block)
                # default launch: one physical block per virtual block (the plain grid,
                # flattened); with vblock_begin=0, vblock_count=N it computes what plain does
                dims["blockIdx.x"] = dkp.virtual_blocks
            writes, loads = _buffer_ids(args, k["stores"]), _buffer_ids(args, k["loads"])
            out.append(
                LaunchRecord(
                    name=k["name"],
                    func=call.func,
                    grid=[dims.get(f"blockIdx.{d}", 1) for d in "xyz"],
                    block=block,
                    shared_mem=dims.get(_DYN_SHMEM, 0),
                    args=args,
                    writes=writes,
                    loads=loads,
                    launch_params=launch_params,
                    dkp=dkp,
                )  # fmt: skip
            )
            if dkp is not None:
                # the preemptible DKP variant's poll interval is no DKP role
                unknown = {
                    a["name"] for a in args
                    if a["kind"] == "reef_param" and not a["name"].startswith(POLL_EVERY)
                } - set(dkp.params)  # fmt: skip
                if unknown:
                    raise UnsupportedError(f"{k['name']}: reef_ parameters {unknown} have no role")
    return out


def _buffer_ids(args: list[dict[str, Any]], params: list[int]) -> list[int]:
    """Buffer ids bound to the kernel parameters ``params`` (indices into ``args``)."""
    return sorted({args[j]["id"] for j in params if j < len(args) and args[j]["kind"] == "buffer"})


def _dkp_launch(
    kname: str, func: str, grid_param: str, infos: list[dict[str, Any]], block: list[int]
) -> DkpLaunch:
    """The DkpLaunch of device kernel ``kname`` from its PrimFunc's ``reef.dkp`` entries.

    The entry is the one whose grid parameter launches this kernel (matched by the launch
    TVM emitted, not by kernel order, which the host/device split need not keep). Roles come
    from the entry's parameter order; the names are only checked against it.
    """
    match = [e for e in infos if len(e.get("params", ())) == 3 and e["params"][2] == grid_param]
    if len(match) != 1:
        raise UnsupportedError(
            f"{kname}: {len(match)} reef.dkp entries of {func} launch with {grid_param!r}"
        )
    e = match[0]
    i = int(e["kernel"])
    sfx = "" if i == 0 else f"_{i}"
    if list(e["params"]) != [b + sfx for b in _DKP_BASE_NAMES]:
        raise UnsupportedError(f"{func}: reef.dkp params {e['params']} not in the expected order")
    n, grid, eblock = e.get("num_vblocks"), e.get("grid"), e.get("block")
    if not isinstance(n, int) or not all(isinstance(x, int) for x in (*grid, *eblock)):
        raise UnsupportedError(f"{kname}: symbolic DKP grid {grid} ({n} blocks); static only")
    if list(eblock) != block:
        raise UnsupportedError(f"{kname}: reef.dkp block {eblock} but launched with {block}")
    return DkpLaunch(
        virtual_blocks=n,
        grid=list(grid),
        block=list(eblock),
        params=dict(zip(e["params"], DKP_ROLES, strict=True)),
    )


def primfunc_param_names(mod: Any) -> dict[str, list[str]]:
    return {gv.name_hint: [p.name for p in f.params] for gv, f in mod.functions.items()}


def primfunc_param_dtypes(mod: Any) -> dict[str, list[str]]:
    return {gv.name_hint: [str(p.ty) for p in f.params] for gv, f in mod.functions.items()}
