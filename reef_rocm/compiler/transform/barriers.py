"""A barrier checker for lowered GPU kernels: does a variant add a shared-memory race?

It walks a lowered device PrimFunc (after TVM's ThreadSync) along the path a running block
takes - every ``reef_stop*`` is 0, loops run their first two iterations, a branch on a
thread-dependent condition is taken both ways - and reports each shared buffer that is read
after a store with no barrier between (RAW), or stored after a read with no barrier
between (WAR). Accesses are not resolved to addresses: a store and a load of the same thread
to the same element are reported too, which is why callers compare variants of one kernel
(the preemptible rewrite must add no hazard the plain kernel does not have) rather than
expect none.

Why it exists: ThreadSync counts a barrier inside a loop of 0 or 1 trips as one that always
runs; the preemptible rewrite once put its poll barriers in such a loop, skipped for chunk 0,
and ThreadSync then left out the barrier between a shared tile's stores and the reduction
that reads it: tuned ResNet-18 kernels raced on the H200. ``tune/compat.py`` runs this on
every tuned record's variants; tests/compiler/test_barriers.py has the negative control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tvm
import tvm_ffi
from tvm import tirx
from tvm.sym.analyzer import Analyzer

from reef_rocm.compiler.transform.tir import _dtype

MAX_VISITS = 3_000_000
_LOAD = type(tirx.decl_buffer((1,), "int8")[0])  # tirx.BufferLoad is a factory here


@dataclass
class _State:
    written: set[str] = field(default_factory=set)  # shared buffers stored since the last barrier
    read: set[str] = field(default_factory=set)  # ... and read since the last barrier

    def copy(self) -> _State:
        return _State(set(self.written), set(self.read))

    def merge(self, other: _State) -> None:
        self.written |= other.written
        self.read |= other.read


def _is_shared(buf: Any) -> bool:
    return str(buf.scope()).startswith("shared")


def _is_barrier(stmt: Any) -> bool:
    if not isinstance(stmt, tirx.Evaluate) or not isinstance(stmt.value, tvm.ir.expr.Call):
        return False
    return str(stmt.value.op.name) == "tirx.tvm_storage_sync" and str(
        stmt.value.args[0].value
    ).startswith("shared")


class _Walker:
    def __init__(self) -> None:
        self.hazards: set[tuple[str, str]] = set()
        self.env: dict[Any, tvm.ir.PrimExpr] = {}  # known values: reef_stop*, loop vars
        self.visits = 0

    # --- expressions -------------------------------------------------------------------
    def value(self, e: tvm.ir.PrimExpr) -> int | None:
        an = Analyzer()
        for var, v in self.env.items():
            an.bind(var, v)
        e = an.simplify(e)
        return int(e.value) if isinstance(e, tirx.IntImm) else None

    def loads(self, node: Any, st: _State) -> None:
        def visit(load: Any) -> None:
            if _is_shared(load.source):
                name = str(load.source)
                if name in st.written:
                    self.hazards.add(("RAW", name))
                st.read.add(name)

        tvm_ffi.structural_walk(node, (_LOAD, visit), order="pre")

    def bind(self, var: Any, value: Any) -> None:
        if str(var.name).startswith("reef_stop"):
            self.env[var] = tirx.IntImm(_dtype(var), 0)  # the running path
        else:
            self.env.pop(var, None)

    # --- statements --------------------------------------------------------------------
    def stmt(self, s: Any, st: _State) -> None:
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise RuntimeError("kernel too large for the barrier checker")
        if isinstance(s, tirx.SeqStmt):
            for c in s.seq:
                self.stmt(c, st)
        elif _is_barrier(s):
            st.written.clear()
            st.read.clear()
        elif isinstance(s, tirx.Evaluate):
            self.loads(s.value, st)
        elif isinstance(s, tirx.BufferStore):
            self.loads(s.value, st)
            for i in s.indices:
                self.loads(i, st)
            if _is_shared(s.buffer):
                name = str(s.buffer.name)
                if name in st.read:
                    self.hazards.add(("WAR", name))
                st.written.add(name)
        elif isinstance(s, tirx.Bind):
            self.loads(s.value, st)
            self.bind(s.var, s.value)
        elif isinstance(s, tirx.LetStmt):
            self.loads(s.value, st)
            self.bind(s.var, s.value)
            self.stmt(s.body, st)
        elif isinstance(s, tirx.IfThenElse):
            self.loads(s.condition, st)
            c = self.value(s.condition)
            if c is not None:
                branch = s.then_case if c else s.else_case
                if branch is not None:
                    self.stmt(branch, st)
                return
            other = st.copy()
            self.stmt(s.then_case, st)
            if s.else_case is not None:
                self.stmt(s.else_case, other)
            st.merge(other)
        elif isinstance(s, tirx.For):
            self.loop(s, st)
        elif isinstance(s, tirx.While):
            self.loads(s.condition, st)
            self.stmt(s.body, st)
            self.stmt(s.body, st)
        elif isinstance(s, (tirx.AttrStmt, tirx.AssertStmt)):
            self.stmt(s.body, st)
        elif isinstance(s, (tirx.AllocBuffer, tirx.DeclBuffer)):
            body = getattr(s, "body", None)
            if body is not None:
                self.stmt(body, st)
        else:
            raise TypeError(f"barrier checker: unhandled {type(s).__name__}")

    def loop(self, s: tirx.For, st: _State) -> None:
        n = self.value(s.extent)
        lo = self.value(s.min)
        trips = 2 if n is None else min(n, 2)
        if trips == 2 and not _has_effects(s.body):
            trips = 1  # a second trip of a body without stores or barriers adds nothing
        for i in range(trips):
            if lo is not None:
                self.env[s.loop_var] = tirx.IntImm(_dtype(s.loop_var), lo + i)
            self.stmt(s.body, st)
        self.env.pop(s.loop_var, None)


def _has_effects(body: Any) -> bool:
    def visit(n: Any) -> tvm_ffi.VisitInterrupt | None:
        if isinstance(n, tirx.BufferStore) and _is_shared(n.buffer) or _is_barrier(n):
            return tvm_ffi.VisitInterrupt(True)
        return None

    return (
        tvm_ffi.structural_walk(body, ((tirx.BufferStore, tirx.Evaluate), visit), order="pre")
        is not None
    )


def added_hazards(plain: Any, variant: Any, poll_every: int = 16) -> dict[str, set]:
    """kernel -> the hazards its ``variant`` device function has and its ``plain`` one
    does not (lowered device modules of one PrimFunc; kernels matched by name)."""
    out: dict[str, set] = {}
    funcs = {str(gv.name_hint): f for gv, f in plain.functions.items()}
    for gv, f in variant.functions.items():
        name = str(gv.name_hint)
        if name not in funcs or not isinstance(f, tirx.PrimFunc):
            continue
        extra = shared_hazards(f, poll_every) - shared_hazards(funcs[name], poll_every)
        if extra:
            out[name] = extra
    return out


def shared_hazards(device_func: tirx.PrimFunc, poll_every: int = 16) -> set[tuple[str, str]]:
    """(kind, buffer) of each unsynchronised shared access on a running block's path;
    ``poll_every`` is the value of the kernel's ``reef_poll_every`` argument, if it has one."""
    w = _Walker()
    for p in device_func.params:
        if str(p.name).startswith("reef_poll_every"):
            w.env[p] = tirx.IntImm(_dtype(p), poll_every)
    w.stmt(device_func.body, _State())
    return w.hazards
