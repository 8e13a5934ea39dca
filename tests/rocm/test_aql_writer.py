"""The AQL writer against a host-memory ring and a simulated command processor: packet
bytes, exact accounting, wrap-around, batches, and a reset mid-stream per the contract."""

from __future__ import annotations

import struct
import threading

import pytest

from reef_rocm.rocm.hsa import aql
from reef_rocm.rocm.hsa.signals import DROPPED
from tests.rocm.sim_ring import (
    TYPE_BARRIER_AND,
    TYPE_DISPATCH,
    TYPE_INVALID,
    SimCommandProcessor,
    SimRing,
    SimSignals,
)


def make(size=8, cap=None, name="be", registry=None):
    ring, sigs = SimRing(size), SimSignals()
    writer = aql.AqlWriter(ring, sigs, cap=cap, name=name, registry=registry)
    return ring, sigs, writer, SimCommandProcessor(ring, sigs)


def tpl(n=1, kernarg=0x7000_0000):
    return aql.DispatchTemplate(kernel_object=0xABC000 + n * 0x100, kernarg_address=kernarg,
                                grid=(64 * n, 2), workgroup=(64, 2), group_segment_size=512,
                                private_segment_size=16)


def test_dispatch_packet_bytes_and_doorbell():
    ring, sigs, w, cp = make()
    s = sigs.create(1)
    assert w.dispatch(tpl(3), signal=s, tag="k3") == 0
    assert (ring.write, ring.doorbell) == (1, 0)
    p = cp.parse(0)
    assert p.type == TYPE_DISPATCH and not p.barrier
    assert (p.acquire, p.release) == (2, 2)  # system scope both ways
    assert p.dims == 2 and p.workgroup == (64, 2, 1) and p.grid == (192, 2, 1)
    assert (p.group, p.private) == (512, 16)
    assert (p.kernel_object, p.kernarg, p.signal) == (0xABC300, 0x7000_0000, s)
    assert w.tag_of(0) == "k3"


def test_barrier_and_packet_bytes():
    ring, sigs, w, cp = make()
    a, b, done = sigs.create(1), sigs.create(1), sigs.create(1)
    w.barrier_and([a, b], signal=done, barrier=True)
    p = cp.parse(0)
    assert p.type == TYPE_BARRIER_AND and p.barrier
    assert p.deps == (a, b, 0, 0, 0) and p.signal == done
    with pytest.raises(ValueError, match="at most 5"):
        w.barrier_and([a] * 6)


def test_accounting_is_exact_and_cap_enforced():
    ring, sigs, w, cp = make(size=8, cap=3)
    for i in range(3):
        w.dispatch(tpl(i + 1))
    assert (w.write_index, w.read_index(), w.waiting(), w.free()) == (3, 0, 3, 0)
    with pytest.raises(aql.QueueFull, match="cap 3"):
        w.dispatch(tpl(9))
    assert ring.write == 3  # the refused packet left nothing behind
    assert cp.fetch(1) == 1
    assert (w.waiting(), w.free()) == (2, 1)
    w.dispatch(tpl(4))
    assert w.waiting() == 3


def test_ring_full_without_cap():
    ring, sigs, w, cp = make(size=4)
    for i in range(4):
        w.dispatch(tpl(i + 1))
    with pytest.raises(aql.QueueFull, match="ring 4"):
        w.dispatch(tpl(5))


def test_wrap_around_keeps_order_and_never_overwrites_unconsumed():
    ring, sigs, w, cp = make(size=8)
    pushed = []
    for i in range(100):
        while w.free() == 0:
            cp.fetch(3)
        w.dispatch(tpl(i % 17 + 1), tag=i)
        pushed.append(0xABC000 + (i % 17 + 1) * 0x100)
        if i % 5 == 4:
            cp.fetch(2)
    cp.fetch()
    assert [p.kernel_object for p in cp.seen] == pushed
    assert [p.index for p in cp.seen] == list(range(100))
    assert w.write_index == ring.read == 100 and w.waiting() == 0


def test_wrapped_slot_is_invalid_until_its_header_is_published():
    """When the write index moves (the CP may look at the slot from then on), the slot's
    header is INVALID although the slot held a valid packet before the wrap, and the body
    is already the new packet's: the header is the last thing written."""

    class WatchingRing(SimRing):
        def store_write_index(self, value):
            i = value - 1
            body = struct.unpack_from("<Q", self.view, (i % self.size) * 64 + 32)[0]
            seen.append((self.header_type(i), body))
            super().store_write_index(value)

    seen = []
    ring, sigs = WatchingRing(2), SimSignals()
    w = aql.AqlWriter(ring, sigs)
    cp = SimCommandProcessor(ring, sigs)
    w.dispatch(tpl(1))
    w.dispatch(tpl(2))
    cp.fetch()
    assert ring.header_type(2) == TYPE_DISPATCH  # slot 0 still holds packet 0's header
    w.dispatch(tpl(3))
    assert seen == [(TYPE_INVALID, 0xABC100), (TYPE_INVALID, 0xABC200),
                    (TYPE_INVALID, 0xABC300)]
    assert ring.header_type(2) == TYPE_DISPATCH and cp.parse(2).kernel_object == 0xABC300


def test_per_packet_and_per_batch_completion_signals():
    ring, sigs, w, cp = make(size=16)
    per = [sigs.create(1) for _ in range(2)]
    for s in per:
        w.dispatch(tpl(1), signal=s)
    batch = sigs.create(3)
    doorbells = ring.doorbells
    idx = w.dispatch_batch([tpl(2), tpl(3), tpl(4)], signal=batch, tags=["a", "b", "c"])
    assert idx == [2, 3, 4] and ring.doorbells == doorbells + 1 and ring.doorbell == 4
    cp.fetch()
    cp.complete(0)
    assert [sigs.load(s) for s in per] == [0, 1]
    cp.complete(-1)
    assert sigs.load(per[1]) == 0 and sigs.load(batch) == 0
    with pytest.raises(aql.QueueFull, match="batch of 20"):
        w.dispatch_batch([tpl(1)] * 20)


def test_barrier_waits_for_dependencies_in_sim():
    ring, sigs, w, cp = make()
    dep = sigs.create(1)
    w.barrier_and([dep])
    w.dispatch(tpl(1))
    assert cp.fetch() == 0 and w.waiting() == 2
    sigs.store_release(dep, 0)
    assert cp.fetch() == 2


def test_reset_mid_stream_follows_the_contract():
    ring, sigs, w, cp = make(size=8)
    signals = [sigs.create(1) for _ in range(7)]
    for i, s in enumerate(signals):
        w.dispatch(tpl(i + 1), signal=s, tag=f"k{i}")
    cp.fetch(4)  # 0..3 consumed
    cp.complete(0)
    cp.complete(1)
    cp.complete(2)  # 3 still running
    report = w.reset(cp.driver_reset)
    assert report.read_index == 4 and report.write_index_before == 7
    assert report.driver_dropped == 3
    assert [d.index for d in report.dropped] == [4, 5, 6]
    assert report.dropped_tags == ["k4", "k5", "k6"]
    assert {d.kind for d in report.dropped} == {"dispatch"}
    for i in (4, 5, 6):
        assert ring.header_type(i) == TYPE_INVALID
        assert sigs.load(signals[i]) == DROPPED
    assert report.errored_signals == tuple(signals[4:7])
    assert report.in_flight == (3,) and sigs.load(signals[3]) == 1  # left alone
    assert (w.write_index, ring.write, w.waiting()) == (4, 4, 0)
    cp.complete(3)  # the in-flight packet may still complete
    assert sigs.load(signals[3]) == 0
    # the queue goes on from the read index, in the freed slots
    s = sigs.create(1)
    assert w.dispatch(tpl(9), signal=s, tag="after") == 4
    assert cp.fetch() == 1 and cp.seen[-1].kernel_object == 0xABC900
    assert [p.index for p in cp.seen] == [0, 1, 2, 3, 4]


def test_reset_resolves_barriers_that_wait_on_dropped_packets():
    registry = aql.DependencyRegistry()
    ring_a, sigs, be, cp_a = make(size=8, name="be", registry=registry)
    ring_b = SimRing(8)
    rt = aql.AqlWriter(ring_b, sigs, name="rt", registry=registry)
    cp_b = SimCommandProcessor(ring_b, sigs)
    s_be = [sigs.create(1) for _ in range(3)]
    for s in s_be:
        be.dispatch(tpl(1), signal=s)
    s_bar = sigs.create(1)
    be.barrier_and([s_be[2]], signal=s_bar, tag="be-barrier")  # dropped with the queue
    waiting_barrier = sigs.create(1)
    rt.barrier_and([s_be[1]], signal=waiting_barrier)  # another queue waits on a BE kernel
    rt.dispatch(tpl(5), tag="after-barrier")
    cp_a.fetch(1)
    assert cp_b.fetch() == 0  # blocked on s_be[1]
    report = be.reset(cp_a.driver_reset)
    assert [d.index for d in report.dropped] == [1, 2, 3]
    assert report.dropped[2].kind == "barrier_and" and report.dropped[2].tag == "be-barrier"
    # s_be[1] has a live waiter in the rt queue: released (0), every other one errored
    assert report.released_signals == (s_be[1],) and sigs.load(s_be[1]) == 0
    assert report.resolved_barriers == (("rt", 0),)
    assert set(report.errored_signals) == {s_be[2], s_bar}
    assert sigs.load(s_be[2]) == DROPPED and sigs.load(s_bar) == DROPPED
    assert cp_b.fetch() == 2  # the rt queue runs on


def test_completed_barrier_no_longer_holds_a_signal():
    registry = aql.DependencyRegistry()
    ring_a, sigs, be, cp_a = make(size=8, name="be", registry=registry)
    ring_b = SimRing(8)
    rt = aql.AqlWriter(ring_b, sigs, name="rt", registry=registry)
    s = sigs.create(1)
    be.dispatch(tpl(1), signal=s)
    done = sigs.create(1)
    rt.barrier_and([s], signal=done)
    sigs.store_release(done, 0)  # that barrier completed (e.g. before a re-submission)
    report = be.reset(cp_a.driver_reset)
    assert report.errored_signals == (s,) and report.resolved_barriers == ()


def test_reset_refuses_while_another_producer_moved_the_write_index():
    ring, sigs, w, cp = make()
    w.dispatch(tpl(1))
    ring.write += 1  # someone else reserved a slot
    called = []
    with pytest.raises(aql.ResetMismatch, match="another producer"):
        w.reset(lambda base: called.append(base))
    assert not called and ring.header_type(0) == TYPE_DISPATCH


def test_reset_refuses_an_impossible_driver_answer():
    ring, sigs, w, cp = make()
    w.dispatch(tpl(1))
    from types import SimpleNamespace

    with pytest.raises(aql.ResetMismatch, match="outside"):
        w.reset(lambda base: SimpleNamespace(read_index=5, dropped=0))
    assert ring.header_type(0) == TYPE_DISPATCH and w.write_index == 1


def test_concurrent_producers_get_distinct_slots():
    ring, sigs, w, cp = make(size=1024)

    def push(k):
        for i in range(200):
            w.dispatch(tpl(k), tag=(k, i))

    threads = [threading.Thread(target=push, args=(k,)) for k in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cp.fetch() == 600
    assert sorted(p.index for p in cp.seen) == list(range(600))
    for k in (1, 2, 3):
        mine = [w.tag_of(p.index) for p in cp.seen if p.kernel_object == 0xABC000 + k * 0x100]
        assert mine == [(k, i) for i in range(200)]


def test_template_validation():
    with pytest.raises(ValueError, match="smaller than workgroup"):
        aql.DispatchTemplate(1, 0, grid=(32,), workgroup=(64,))
    with pytest.raises(ValueError, match="16 bits"):
        aql.DispatchTemplate(1, 0, grid=(1 << 17,), workgroup=(1 << 16,))
    with pytest.raises(ValueError, match="kernel_object"):
        aql.DispatchTemplate(0, 0, grid=(64,), workgroup=(64,))
    with pytest.raises(ValueError, match="power of two"):
        aql.AqlWriter(type("R", (), {"size": 6, "ring_base": 64, "load_write_index": lambda s: 0,
                                     "load_read_index": lambda s: 0})(), SimSignals())


def test_header_encoding_matches_the_header_bit_layout():
    # type bits 0-7, barrier bit 8, acquire scope bits 9-10, release scope bits 11-12
    assert aql.header(2, True, 1, 2) == 2 | 1 << 8 | 1 << 9 | 2 << 11
    assert aql.INVALID_HEADER == 1


def test_reused_completion_signal_retires_the_old_barrier():
    """A barrier's completion signal given to a new packet (a slot ring reusing signals)
    means that barrier finished: a later reset must not treat it as a live waiter."""
    registry = aql.DependencyRegistry()
    ring_a, sigs, be, cp_a = make(size=8, name="be", registry=registry)
    rt = aql.AqlWriter(SimRing(8), sigs, name="rt", registry=registry)
    s = sigs.create(1)
    be.dispatch(tpl(1), signal=s)
    c = sigs.create(1)
    rt.barrier_and([s], signal=c)
    sigs.store_release(c, 0)  # that barrier completed ...
    sigs.store_release(c, 1)  # ... and its signal now tracks a new packet
    rt.dispatch(tpl(2), signal=c)
    report = be.reset(cp_a.driver_reset)
    assert report.errored_signals == (s,) and report.resolved_barriers == ()
