"""Dynamic kernel padding in the scheduler: the engine's hook for the ``+dkp`` policies.

Where the engine launches an RT inference (``Engine._launch_rt``) a policy with ``pads`` has
the :class:`Padder` launch it kernel by kernel instead: each RT kernel plainly, or as one
``PaddedLaunch`` (RT kernel + virtual blocks of one BE kernel, bound once per pair and cached;
only the BE limit and the CU table change in place) where ``Selector.select`` picks BE work
and the DKP profile says the dispatcher keeps that RT kernel within ``dkp_tolerance`` of its
plain time. No DKP profile: nothing is padded, and a warning (and trace instant) says so.

Only BE work that is known SAFE to pad is a candidate (sequential BE semantics):

* a held (preempted) BE client whose drain marker completed: its slot read landed, so
  ``first_incomplete()`` is exact and every kernel before it finished; its next kernel is
  padded (the evicted launch may have left a count that is not a prefix, so that kernel's
  slot and cursor are zeroed in RT-stream order first, and it restarts at virtual block 0);
* a BE inference not yet started (kernel 0 has no predecessor): the padder starts it on the RT
  stream (slots zeroed, inputs uploaded) and hands it to the engine as a held client.

The padded BE kernel counts finished virtual blocks in the BE instance's own completion slot
(``SlotCursor``), and a slot read queued on the RT stream behind the padded launches (before
the RT completion event) refreshes the host copy, so the engine's resume (``_resume``, after
the RT request completed) restores from the slots as after any preemption and re-runs the
first incomplete kernel on the BE stream: exact restore. A client's next kernel is padded
only once a slot read showed its current one complete; until then later RT requests continue
the same kernel (the cursor continues, limits are cumulative).

The device side is a backend object (``open_backend``; tests replace it with a sim model):
:class:`DkpBackend` wraps ``reef_rocm.dkp`` (``DkpRuntime``, ``Selector``, ``DkpProfile``).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

from reef_rocm.dkp.select import BeCandidate, KernelProfile
from reef_rocm.errors import UnsupportedError


@dataclass
class PadStats:
    """What the padder did, for results that say why DKP did or did not help."""

    rt_kernels: int = 0  # RT kernels the padder launched
    padded: int = 0  # ... of them padded with BE work
    no_candidate: int = 0  # no safe BE work, or selection found none that fits (rules 1-2)
    over_tolerance: int = 0  # the pair's proxy is slower than plain beyond dkp_tolerance
    unprofiled: int = 0  # RT kernels of models the DKP profile/build does not cover
    be_started: int = 0  # BE inferences the padder started inside RT launches
    be_blocks: int = 0  # BE virtual blocks that ran in padding (from slot reads)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class DkpBackend:
    """The device side of padding on a real GPU: a DKP build loaded with ``DkpRuntime``, its
    selection and its DKP profile (``reef_rocm.dkp.profile``)."""

    def __init__(self, device: Any, build_dir: Any, tolerance: float, stream: Any) -> None:
        from reef_rocm.dkp.build import load_build
        from reef_rocm.dkp.launch import DkpRuntime
        from reef_rocm.dkp.profile import load_dkp_profile, profile_path
        from reef_rocm.dkp.select import Selector

        self.build = load_build(build_dir)
        self.runtime = DkpRuntime(device, self.build)
        try:
            self.runtime.probe_hw_ids(stream)
            self.selector = Selector(self.build.arch, self.runtime.compute_units,
                                     self.build.proxies)  # fmt: skip
            self.profile = load_dkp_profile(build_dir, device.info.arch)
        except BaseException:
            self.runtime.close()
            raise
        self.tolerance = tolerance
        self.device = device
        self.profile_note = None if self.profile is not None else (
            f"no DKP profile at {profile_path(build_dir, device.info.arch)}: no RT kernel is "
            "padded (measure one on this GPU: python tools/dkp_profile.py --build "
            f"{build_dir} --packages DIR)"
        )  # fmt: skip

    def has_bodies(self, package: Any) -> bool:
        """The build compiled this model's kernels (PackageError if from other sources)."""
        if package.name not in self.build.sources:
            return False
        self.build.check_package(package)
        return True

    def kernel_profiles(self, model: Any) -> list[KernelProfile] | None:
        from reef_rocm.dkp.select import package_profiles

        p, name = self.profile, model.package.name
        if p is None or not p.has(name):
            return None
        return package_profiles(model.package, p.plain_profile(name), self.build)

    def rt_within(self, model: Any, kernel: int, budget: int) -> bool:
        p = self.profile
        return p is not None and p.padded_within(model.package.name, kernel, budget,
                                                 self.tolerance)  # fmt: skip

    def prepare(self, inst: Any, profiles: list[KernelProfile], stream: Any) -> None:
        """Argument structs (and, for RT models, CU tables) made at load: both synchronize
        once when first made, which the RT path must not."""
        for i in range(inst.num_kernels):
            self.runtime.args_buffer(inst, i, stream)
        for kp in profiles:
            n = self.selector.rt_cus(kp)
            if n < self.runtime.compute_units:
                self.runtime.table_for(n, stream)

    def cursor(self, inst: Any) -> Any:
        from reef_rocm.dkp.launch import SlotCursor

        return SlotCursor(self.device, inst)

    def bind(self, rt: Any, i: int, be: Any, j: int, cursor: Any, proxy: Any, stream: Any) -> Any:
        # preempt_flag None: the runtime's own flag, never raised - nothing preempts RT work,
        # and the scheduler's flag is up for the whole preemption these launches run in
        return self.runtime.bind(rt, i, be, j, cursor, proxy, stream)

    def table_for(self, n_rt: int, stream: Any) -> Any:
        return self.runtime.table_for(n_rt, stream)

    def forget(self, inst: Any) -> None:
        self.runtime.forget(inst)

    def close(self) -> None:
        self.runtime.close()


def open_backend(device: Any, options: Any, stream: Any) -> Any:
    """The padding backend for ``device`` (tests replace this function with a sim model)."""
    caps = device.capabilities
    if not getattr(caps, "indirect_calls", False):
        raise UnsupportedError(
            f"policy {options.policy!r} pads RT kernels through the DKP dispatcher, which "
            f"calls kernel bodies through device function pointers; {device.info.name} "
            "(capability indirect_calls) cannot"
        )
    if not options.dkp_build:
        raise UnsupportedError(
            f"policy {options.policy!r} needs a DKP build of the loaded models: "
            "SchedOptions(dkp_build=DIR) / reef bench disb --dkp-build DIR (made by "
            "reef_rocm.dkp.build.build_packages or tools/build_dkp_carry.py)"
        )
    return DkpBackend(device, options.dkp_build, options.dkp_tolerance, stream)


class _PadModel:
    """Per loaded model: its kernel profiles (None: not padded / not used as padding), the
    BE cursor, and (RT) whether any proxy keeps each kernel within the tolerance."""

    __slots__ = ("model", "profiles", "cursor", "blocks")

    def __init__(self, model: Any, profiles: list[KernelProfile] | None, cursor: Any) -> None:
        self.model = model
        self.profiles = profiles
        self.cursor = cursor
        self.blocks = [int(b) for b in model.blocks]


class PadClient:
    """One BE client's padding state while its queue is held: the kernel being padded and
    the BE virtual blocks handed to launches so far (``planned``, >= the cursor)."""

    __slots__ = ("q", "pm", "task", "kernel", "planned", "fresh", "restart", "started", "seen")

    def __init__(self, q: Any, pm: _PadModel, task: Any, kernel: int, fresh: bool) -> None:
        self.q = q
        self.pm = pm
        self.task = task
        self.kernel = kernel
        self.planned = 0
        self.fresh = fresh  # a BE inference the padder starts (not a preempted one)
        self.restart = False  # a preempted one restarted at kernel 0 (inputs again)
        self.started = False  # slots and cursor of kernel.. zeroed in RT-stream order
        self.seen: dict[int, int] = {}  # kernel -> finished blocks already credited

    def candidate(self) -> BeCandidate:
        k = self.kernel
        return BeCandidate(self.pm.profiles[k], self.pm.blocks[k] - self.planned)  # type: ignore[index]


class Padder:
    """The engine's padding hook (created by the engine when ``policy.pads``)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.backend = open_backend(engine.device, engine.options, engine.rt_stream)
        self.selector = self.backend.selector
        self.stats = PadStats()
        self.models: dict[int, _PadModel] = {}
        self.clients: dict[int, PadClient] = {}
        self._pads: dict[tuple[int, int, int, int, int], Any] = {}
        self._credit: list[tuple[PadClient, int]] = []  # slot reads not landed yet
        self._inflight: dict[int, list[tuple[PadClient, int]]] = {}
        if self.backend.profile_note:
            self._note(self.backend.profile_note)

    def _note(self, text: str) -> None:
        warnings.warn(text, stacklevel=3)
        e = self.engine
        if e.trace.enabled:
            e.trace.instant("dkp", text, e._now())

    # ------------------------------------------------------------------ models
    def add(self, model: Any, be: bool) -> None:
        b = self.backend
        profiles = None
        if b.has_bodies(model.package):
            profiles = b.kernel_profiles(model)
            if profiles is None and b.profile_note is None:
                what = "not used as padding" if be else "its kernels run plainly"
                self._note(f"{model.package.name}: not in the DKP profile; {what}")
        cursor = None
        if profiles is not None:
            b.prepare(model.inst, profiles, self.engine.rt_stream)
            if be:
                cursor = b.cursor(model.inst)
        self.models[id(model)] = _PadModel(model, profiles, cursor)

    def remove(self, model: Any) -> None:
        pm = self.models.pop(id(model), None)
        if pm is None:
            return
        key = id(model.inst)
        for k in [k for k in self._pads if key in (k[0], k[2])]:
            del self._pads[k]
        if pm.cursor is not None:
            pm.cursor.close()
        self.backend.forget(model.inst)

    # ------------------------------------------------------------------ the RT path
    def launch_rt(self, task: Any, m: Any, s: Any) -> None:
        """Launch RT inference ``task`` of ``m`` on ``s`` kernel by kernel, padded where safe
        BE work fits and the DKP profile allows; then queue the padded clients' slot reads."""
        st = self.stats
        pm = self.models.get(id(m))
        st.rt_kernels += m.n
        if pm is None or pm.profiles is None:
            st.unprofiled += m.n
            m.inst.launch_range(s, 0, m.n)
            return
        clients = self._candidates()
        if not clients:
            st.no_candidate += m.n
            m.inst.launch_range(s, 0, m.n)
            return
        sel, b, inst = self.selector, self.backend, m.inst
        touched: list[PadClient] = []
        padded = 0
        for i, kp in enumerate(pm.profiles):
            live = [c for c in clients if c.planned < c.pm.blocks[c.kernel]]
            pick = sel.select(kp, [c.candidate() for c in live]) if live else None
            if pick is None:
                st.no_candidate += 1
                inst.launch(i, s)
                continue
            if not b.rt_within(m, i, pick.proxy.budget):
                st.over_tolerance += 1
                inst.launch(i, s)
                continue
            c = live[pick.be]
            pad = self._pad(m, i, c, pick.proxy, s)
            if pad is None:
                st.no_candidate += 1
                inst.launch(i, s)
                continue
            if not c.started:
                self._begin(c, s)  # zeroing (and a fresh start) in RT order before the launch
            c.planned += pick.be_count
            pad.set_be_limit(c.planned)
            pad.set_table(b.table_for(pick.rt_cus, s))
            pad.launch(s)
            padded += 1
            if c not in touched:
                touched.append(c)
        for c in touched:
            # behind the padded launches, before the RT completion event: the engine's
            # resume (after RT completed) restores from what padding ran
            c.q.model.read_slots_async(s)
            c.q.slots_read = True
        st.padded += padded
        task.record.padded_kernels = padded
        if touched:
            self._inflight[id(task)] = [(c, c.kernel) for c in touched]

    def _pad(self, m: Any, i: int, c: PadClient, proxy: Any, s: Any) -> Any:
        be = c.q.model
        key = (id(m.inst), i, id(be.inst), c.kernel, proxy.budget)
        pad = self._pads.get(key, False)
        if pad is False:
            try:
                pad = self.backend.bind(m.inst, i, be.inst, c.kernel, c.pm.cursor, proxy, s)
            except UnsupportedError as e:  # e.g. shared memory above the device's limit
                self._note(f"{m.package.name} kernel {i} + {be.package.name} kernel "
                           f"{c.kernel}: not padded ({e})")  # fmt: skip
                pad = None
            self._pads[key] = pad
        return pad

    def _candidates(self) -> list[PadClient]:
        """BE work that is safe to pad now (module docstring)."""
        out: list[PadClient] = []
        for q in self.engine.be:
            pm = self.models.get(id(q.model))
            if pm is None or pm.cursor is None:
                continue
            c = self.clients.get(id(q))
            if c is not None and (c.task is not q.cur or not q.held):
                del self.clients[id(q)]  # cancelled or restored behind our back
                c = None
            if c is not None:
                self._refresh(c)
                if c.kernel < q.model.n:
                    out.append(c)
                continue
            task = q.cur
            if task is not None:
                if q.held and q.slots_read and not q.drain_pending and not q.await_marker:
                    # the drain's slot read landed: exact. Unconfirmed (a queue reset may
                    # have dropped the begin zeroing): restart at 0, as the engine would
                    j = q.model.first_incomplete() if task.confirmed else 0
                    if j < q.model.n:
                        c = self.clients[id(q)] = PadClient(q, pm, task, j, fresh=False)
                        c.restart = not task.confirmed
                        out.append(c)
            elif q.tasks and not q.held:
                t = q.tasks[0]
                if t.inputs is not None or q.model.preloaded:
                    out.append(PadClient(q, pm, None, 0, fresh=True))
        return out

    def _refresh(self, c: PadClient) -> None:
        """Where the client's padding stands, once our last slot read landed: the cursor is
        exact (``planned`` = finished blocks), and a completed kernel lets the next one be
        padded (its slot and cursor are still zero from ``_begin``)."""
        if not c.started or c.kernel >= c.q.model.n:
            return
        inst = c.q.model.inst
        if not inst.slots_ready():
            return
        done = int(inst.slot_counts()[c.kernel])
        if done >= c.pm.blocks[c.kernel]:
            c.kernel = c.q.model.first_incomplete()
            c.planned = 0
        else:
            c.planned = done

    def _begin(self, c: PadClient, s: Any) -> None:
        e, q = self.engine, c.q
        m = q.model
        if c.fresh:
            task = q.tasks.popleft()
            c.task = task
            q.cur = task
            q.next = 0
            q.tail_issued = False
            if task.inputs is not None:
                m.set_inputs(task.inputs)
            q.held = True  # restored by the engine's resume once RT completed
            task.record.launched_us = task.record.start_us = e._now()
            from reef_rocm.sched.engine import NORMAL, PREEMPTED

            if e.state == NORMAL:
                e.state = PREEMPTED  # so the engine resumes it (no flag was raised)
            self.clients[id(q)] = c
            self.stats.be_started += 1
        if (c.fresh or c.restart) and c.task.inputs is not None:
            m.upload_inputs(s)
        # the zeroing precedes everything padding runs, in RT order: the slots are trusted
        c.task.confirmed = True
        m.zero_slots(s, c.kernel)
        c.pm.cursor.reset(s, c.kernel)
        c.started = True

    # ------------------------------------------------------------------ engine callbacks
    def rt_done(self, task: Any) -> None:
        """RT request ``task`` completed: credit the BE blocks its padding ran."""
        lst = self._inflight.pop(id(task), None)
        if lst:
            self._credit.extend(lst)
        if not self._credit:
            return
        n, keep = 0, []
        for c, j in self._credit:
            inst = c.q.model.inst
            if c.q.cur is not c.task:
                continue  # the inference finished or was cancelled meanwhile
            if not inst.slots_ready():
                keep.append((c, j))  # a later read on the RT stream is still in flight
                continue
            done = int(inst.slot_counts()[j])
            n += max(0, done - c.seen.get(j, 0))
            c.seen[j] = max(done, c.seen.get(j, 0))
        self._credit = keep
        task.record.pad_be_blocks = n
        self.stats.be_blocks += n

    def resumed(self, q: Any) -> None:
        """The engine restores held client ``q`` (its padding state ends here)."""
        c = self.clients.pop(id(q), None)
        if c is not None and c.fresh and q.cur is c.task:
            q.cur.record.preemptions -= 1  # started inside RT launches, never preempted
        self._credit = [(x, j) for x, j in self._credit if x is not c]

    def close(self) -> None:
        for pm in self.models.values():
            if pm.cursor is not None:
                pm.cursor.close()
            self.backend.forget(pm.model.inst)
        self.models.clear()
        self._pads.clear()
        self.backend.close()
