"""The scheduler on hand-built instruction streams with known timings."""

from __future__ import annotations

import numpy as np

from simulator.timing.engine import ST_DRAM, ST_QUEUE, schedule
from simulator.timing.stream import K_BARRIER, K_CTRL, K_HALT, K_SYNC, K_UNIT, UNITS

LD, ST, TC, SFU = (UNITS.index(u) for u in ("ld", "st", "tc", "sfu"))


def run(rows, latency=10, depth=8):
    """rows: (kind, unit, wt, sg, dur, bus)."""
    a = np.array(rows, np.int64)
    return schedule(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5], latency, depth)


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
