"""The scheduler on hand-built instruction streams with known timings."""

from __future__ import annotations

import numpy as np

from simulator.timing.engine import ST_DRAIN, ST_DRAM, ST_QUEUE, schedule
from simulator.timing.stream import K_BARRIER, K_CTRL, K_HALT, K_SYNC, K_UNIT, UNITS

LD, ST, TC, SFU = (UNITS.index(u) for u in ("ld", "st", "tc", "sfu"))


def run(rows, latency=10, depth=8, sets=1):
    """rows: (kind, unit, wt, sg, dur, bus[, tail, hold, pre, pre_dep + 1, pre_stream + 1,
    early, follow + 1, follow_lag])."""
    a = np.array([tuple(r) + (0,) * (14 - len(r)) for r in rows], np.int64)
    return schedule(
        a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5], a[:, 6], a[:, 7] > 0,
        a[:, 8], a[:, 9] - 1, a[:, 10] - 1, latency, depth, sets, np.zeros(len(a), np.int64),
        np.zeros(len(a), np.int64), a[:, 11] > 0, a[:, 12] - 1, a[:, 13],
    )  # fmt: skip


def test_token_orders_units_and_dma_latency():
    # load (bus 100 + latency 10) signals 2; TC waits for 2 and computes 50 cycles.
    _d, s, e, _busy, stall, status = run(
        [(K_UNIT, LD, 0, 2, 100, 100), (K_UNIT, TC, 2, 0, 50, 0), (K_HALT, 0, 0, 0, 1, 0)]
    )
    assert status == 0
    assert e[0] == s[0] + 110
    assert s[1] == e[0] and e[1] == e[0] + 50
    assert stall[TC, LD] == e[0] - 2  # TC had the op at cycle 2, waited for the load's token
    assert e[2] == e[1] + 1  # halt drains everything


def test_loads_and_stores_share_the_dram_channel():
    _d, s, _e, _busy, stall, _status = run(
        [(K_UNIT, LD, 0, 0, 64, 64), (K_UNIT, ST, 0, 0, 64, 64), (K_HALT, 0, 0, 0, 1, 0)]
    )
    assert s[1] == s[0] + 64  # the store waits for the channel, not for the load's latency
    assert stall[ST, ST_DRAM] == s[1] - 2


def test_independent_units_overlap_and_barrier_waits():
    rows = [(K_UNIT, TC, 0, 0, 100, 0), (K_UNIT, SFU, 0, 0, 100, 0), (K_BARRIER, 0, 0, 0, 1, 0)]
    d, _s, e, _busy, _stall, _status = run([*rows, (K_CTRL, 0, 0, 0, 1, 0)])
    assert abs(int(e[0]) - int(e[1])) <= 1  # overlapped, not serialised
    assert d[3] >= max(e[0], e[1])


def test_full_queue_blocks_dispatch():
    rows = [(K_UNIT, TC, 0, 0, 10, 0)] * 5 + [(K_UNIT, SFU, 0, 0, 1, 0)]
    d, _s, _e, _busy, stall, status = run(rows, depth=2)
    assert status == 0
    assert stall[0, ST_QUEUE] > 0
    assert d[5] > 20  # the SFU op could only be dispatched after TC entries freed up


def test_unsignalled_token_is_reported():
    *_, status = run([(K_UNIT, TC, 3, 0, 10, 0), (K_HALT, 0, 0, 0, 1, 0)])
    assert status == 1


def test_dram_channel_serves_requests_in_time_order():
    """A load scheduled after a store in program order but ready long before it takes the
    channel's idle gap (double buffering: the next image loads while this one computes)."""
    _d, s, _e, _busy, stall, status = run(
        [
            (K_UNIT, LD, 0, 2, 100, 100),
            (K_UNIT, TC, 2, 3, 1000, 0),
            (K_UNIT, ST, 3, 0, 100, 100),
            (K_UNIT, LD, 0, 0, 100, 100),
            (K_UNIT, LD, 0, 0, 2000, 2000),  # does not fit before the store: goes after it
            (K_HALT, 0, 0, 0, 1, 0),
        ]
    )
    assert status == 0
    assert s[3] == s[0] + 100  # right after the first load, not after the store
    assert s[2] == s[1] + 1000
    assert s[4] == s[2] + 100  # the long transfer waits for the store's interval to pass
    assert stall[LD, ST_DRAM] == s[4] - (s[3] + 100)


def test_sync_blocks_its_units_queue_until_its_token():
    """A `sync` waiting on a token holds back everything behind it in its unit's queue (the
    queue is in order): here the SFU clears for 300 cycles and signals 5, a TC `sync` waits
    for 5, and the TC op behind it must not start before the clear ends. (Until 2026-11-22
    the marker waited but the op behind it did not.)"""
    _d, s, e, _busy, _stall, status = run(
        [
            (K_UNIT, SFU, 0, 5, 300, 0),
            (K_SYNC, TC, 5, 0, 0, 0),
            (K_UNIT, TC, 0, 0, 50, 0),
            (K_HALT, 0, 0, 0, 1, 0),
        ]
    )
    assert status == 0
    assert s[1] == e[0] == e[1]
    assert s[2] >= e[0]


def test_double_buffered_outputs_overlap_the_drain_and_tokens_wait_for_it():
    """Two tensor-core tiles with a 30-cycle SRU drain (`tail`) each: with two output
    buffers the second tile starts when the first releases the cores, the drains run in
    order, and an SFU op waiting for the first tile's token starts only after its drain."""
    rows = [
        (K_UNIT, TC, 0, 2, 100, 0, 30),
        (K_UNIT, TC, 0, 0, 100, 0, 30),
        (K_UNIT, SFU, 2, 0, 10, 0),
        (K_SYNC, TC, 0, 0, 0, 0),
        (K_HALT, 0, 0, 0, 1, 0),
    ]
    _d, s, e, busy, _stall, status = run(rows, sets=2)
    assert status == 0
    assert s[1] == s[0] + 100  # the cores went on while the SRUs drained tile 0
    assert e[0] == s[0] + 130 and e[1] == s[1] + 130
    assert s[2] == e[0]  # the consumer waited for the drain, not for the cores
    assert s[3] == e[1]  # `sync` on the tensor cores waits for the last drain
    assert busy[TC] == 200  # the drain is the output path's time, not the cores'
    # one output buffer: every tile waits for the previous tile's drain
    _d, s1, e1, _busy, stall1, _status = run(rows, sets=1)
    assert s1[1] == e1[0] == s1[0] + 130 and stall1[TC, ST_DRAIN] == 30


def test_drains_queue_and_hold_waits_for_the_previous_drain():
    """A drain longer than the next tile's compute delays the next drain (one output path)
    and, with two buffers, the tile after that (its buffer is still draining); a tile that
    touches the bytes being drained (`hold`) waits for the drain."""
    rows = [
        (K_UNIT, TC, 0, 0, 10, 0, 50),
        (K_UNIT, TC, 0, 0, 10, 0, 50),
        (K_UNIT, TC, 0, 0, 10, 0, 0),
        (K_HALT, 0, 0, 0, 1, 0),
    ]
    _d, s, e, _busy, stall, _status = run(rows, sets=2)
    assert s[1] == s[0] + 10 and e[0] == s[0] + 60
    assert e[1] == e[0] + 50  # its drain waited for the first one
    assert s[2] == e[0]  # tile 2 reuses tile 0's buffer
    assert stall[TC, ST_DRAIN] == e[0] - (s[1] + 10)
    held = [rows[0], (K_UNIT, TC, 0, 0, 10, 0, 0, 1), rows[3]]
    _d, s, e, _busy, _stall, _status = run(held, sets=2)
    assert s[1] == e[0] == s[0] + 60


def test_the_packer_plans_ahead_in_order_and_after_the_masks():
    """A tile's prelude (`pre`) runs on the packer while the previous tile runs and while the
    unit waits for a token, not before the previous tile has started, and not before the op
    that wrote its masks (`pre_dep`) has ended; what is not hidden delays the tile."""
    rows = [
        (K_UNIT, SFU, 0, 0, 500, 0),  # 0: wrote the masks of tile 3
        (K_UNIT, LD, 0, 2, 300, 300),  # 1: the operands of tile 3 (token 2)
        (K_UNIT, TC, 0, 0, 100, 0, 0, 0, 20),  # 2: plan 20, nothing to wait for
        (K_UNIT, TC, 2, 0, 100, 0, 0, 0, 40, 1),  # 3: plan 40 after op 0, operands after 1
        (K_UNIT, TC, 0, 0, 100, 0, 0, 0, 150),  # 4: plan 150 from tile 3's start
        (K_HALT, 0, 0, 0, 1, 0),
    ]
    _d, s, e, busy, _stall, status = run(rows)
    assert status == 0
    assert e[2] == s[2] + 20 + 100  # the first prelude had nothing to hide behind
    ready = max(e[1], e[0] + 40)  # operands (load + latency) and the plan after the masks
    assert s[3] == e[1] and e[3] == ready + 100
    assert e[4] == e[3] + 150 - 100 + 100  # 150 cycles of plan against tile 3's 100
    assert busy[TC] == 3 * 100 + 20 + (ready - e[1]) + 50


def test_a_streaming_prelude_follows_its_mask_writer():
    """`pre_stream`: a conditional pass's packer reads the gates as the CGU writes them: its
    prelude may begin with the CGU, and its last `pre_stream` cycles follow the CGU's end."""
    cgu = UNITS.index("cgu")
    rows = [
        (K_UNIT, cgu, 0, 3, 200, 0),  # 0: the CGU writes the gates, signals 3
        (K_UNIT, TC, 3, 0, 100, 0, 0, 0, 150, 1, 69),  # 150-cycle prelude, 68 after the gates
        (K_HALT, 0, 0, 0, 1, 0),
    ]
    _d, s, e, _busy, _stall, status = run(rows)
    assert status == 0 and s[1] == e[0]
    assert e[1] == e[0] + 68 + 100  # 82 cycles of measuring hidden under the CGU's 200
    short = [rows[0], (K_UNIT, TC, 3, 0, 100, 0, 0, 0, 300, 1, 69), rows[2]]
    d, s, e, _busy, _stall, _status = run(short)
    # measuring outlasts the CGU: it began with it (once the op was in the queue)
    assert e[1] == max(s[0], d[1] + 1) + 300 + 100
    plain = [rows[0], (K_UNIT, TC, 3, 0, 100, 0, 0, 0, 150, 1), rows[2]]
    _d, s, e, _busy, _stall, _status = run(plain)
    assert e[1] == e[0] + 150 + 100  # not streamed: after the CGU


def test_streaming_consumer_starts_with_its_producer_and_ends_after_it():
    """A CGU streaming behind the base pass (`early` on the base pass, `follow` on the gate):
    the gate starts when the base pass's work starts and ends `follow_lag` after it; the
    conditional pass waits for the gate. Without streaming the gate starts at the base
    pass's end."""
    cgu = UNITS.index("cgu")
    base = (K_UNIT, TC, 0, 7, 100, 0)
    cond = (K_UNIT, TC, 8, 0, 50, 0)
    _d, s, e, busy, _stall, status = run(
        [base, (K_UNIT, cgu, 7, 8, 30, 0), cond, (K_HALT, 0, 0, 0, 1, 0)]
    )
    assert status == 0 and s[1] == e[0] and e[1] == e[0] + 30 and s[2] == e[1]
    streamed = [(*base, 0, 0, 0, 0, 0, 1), (K_UNIT, cgu, 7, 8, 30, 0, 0, 0, 0, 0, 0, 0, 1, 2), cond]
    d2, s2, e2, busy2, stall2, status = run([*streamed, (K_HALT, 0, 0, 0, 1, 0)])
    assert status == 0
    assert s2[1] == max(s2[0], d2[1] + 1)  # begins with the base pass (once dispatched)
    assert e2[1] == e2[0] + 2  # its last gates follow the base pass's last sums
    assert s2[2] == e2[1] and e2[2] < e[2]
    assert busy2[cgu] == busy[cgu] == 30  # the CGU's own work is unchanged
    assert stall2[cgu, TC] == e2[0] + 2 - (s2[1] + 30)  # the rest is waiting for the lanes
    # a long gate op outlasts the base pass: it ends after its own work
    slow = [(*base, 0, 0, 0, 0, 0, 1), (K_UNIT, cgu, 7, 8, 300, 0, 0, 0, 0, 0, 0, 0, 1, 2), cond]
    _d, s3, e3, _b, _st, status = run([*slow, (K_HALT, 0, 0, 0, 1, 0)])
    assert status == 0 and e3[1] == s3[1] + 300
