"""The event scheduler: executed instructions in program order through the controller, the
per-unit in-order queues, the dependency tokens and the shared DRAM channel.

Rules (docs/isa.md execution model; timing choices in docs/simulator.md):
- The controller dispatches one instruction per cycle in program order. Control instructions
  (`setr`, `addr`, `layer`, `nop`, ...) execute in the controller in one cycle (`nop` with `wt`
  waits there). A full unit queue (`queue_depth` entries not yet started) blocks dispatch.
  `barrier` and `halt` block dispatch until every unit has completed all its work.
- A unit starts its head instruction when the unit is free, the instruction has arrived and its
  `wt` token is positive; the token is then decremented. `sg` is incremented at completion.
  Tokens are counting semaphores: a wait consumes the earliest outstanding signal (waits are
  matched to signals in program order).
- DMA (`ld`, `st`): a transfer occupies the shared DRAM channel for its bus cycles (each row
  at least one bus beat), then completes `latency` cycles later; the unit may start its next
  transfer as soon as the channel has accepted the previous one, completions stay in order.
  The channel serves requests in time order (first come, first served): instructions are
  scheduled in program order, so a transfer that is ready earlier than one of a later-ready
  but earlier-scheduled transfer takes the idle gap before it (the channel keeps its busy
  intervals, not just its last end).
- Drain (`tail`, `hold`, `acc_sets`; tensor cores with `tensor_core.output_buffers` > 1): an
  op's `tail` cycles follow its `dur` on the unit's output path (the SRUs rounding and writing
  its results), not on the unit itself. The unit is free again after `dur`; the drain starts
  when the previous drain of the unit has ended (one output path, in order), and the op
  completes (signals its token, counts for `sync` and barriers) when its drain ends. Each op
  holds one of `acc_sets` output buffers from its start to its drain's end, so it starts no
  earlier than the drain of the op `acc_sets` before it; an op with `hold` set (it touches the
  bytes the previous op's drain writes) starts no earlier than that drain's end. Waiting for
  either is stall `drain`. With `tail` all zero these rules change nothing.
- Prelude (`pre`, `pre_dep`; the tensor cores' work packer under `lane_distribution:
  dynamic`): an op's `pre` cycles (reading its masks, planning its lanes) run on the unit's
  packer before the op itself. The packer works on one op at a time, in order, and keeps two
  descriptor sets, so it starts an op's prelude once the op is in the queue, the previous
  op has started, the packer has finished the previous prelude, and the op's masks are
  written (`pre_dep`: the executed op that last wrote the mask buffer before it, -1 for none;
  its end). It therefore runs during the unit's waits for tokens too. The op starts when the
  unit could start it (queue, tokens, buffers) or when its prelude ends, whichever is later;
  the prelude not hidden that way counts as the unit's busy time. With `pre_stream` >= 0 the
  prelude reads the masks as `pre_dep` writes them (a conditional pass's packer behind the
  CGU): it may begin when `pre_dep` begins, and its last `pre_stream` cycles (the plan that
  needs all the masks) follow `pre_dep`'s end.
- Streaming (`early`, `follow`; the CGU behind the base pass, `cgu.streams_base_sums`): an op
  with `early` set signals its token when its own work begins (after its prelude), so its
  consumer may start while it runs; that consumer has `follow` = the producer and reads the
  producer's outputs as they are written: it ends no earlier than `follow_lag` cycles after
  the producer ends (the wait counts as a stall on the producer's unit). The compiler's
  tokens pair the two (`model._streams`), so no other op consumes the early signal.
- `sync` is a zero-length marker in a unit's queue: it starts once every earlier instruction
  of that unit has completed (and its token is positive), and the unit starts nothing behind
  it before then (in-order queue).
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.timing.stream import K_BARRIER, K_HALT, K_SKIP, K_SYNC, K_UNIT, N_UNITS

HEAP_CAP = 4096
CH_CAP = 4096  # busy intervals of the DRAM channel kept for gap filling
N_TOKENS = 16
# Columns of the per-unit stall matrix: waiting for a token signalled by unit u (0..N_UNITS-1),
# for the DRAM channel, for a free queue entry (controller only), for a barrier (controller).
# For an output buffer or the previous op's drain (`tail`, `hold`).
ST_DRAM, ST_QUEUE, ST_BARRIER, ST_DRAIN = N_UNITS, N_UNITS + 1, N_UNITS + 2, N_UNITS + 3
N_STALL = N_UNITS + 4
MAX_ACC_SETS = 8
# Heap entries carry the signalling unit in their low bits (time-ordered all the same).
_UNIT_BITS = 4


@numba.njit(cache=True)
def _push(heap, size, t, v):  # pragma: no cover - numba
    i = size[t]
    heap[t, i] = v
    size[t] += 1
    while i > 0:
        parent = (i - 1) // 2
        if heap[t, parent] <= heap[t, i]:
            break
        heap[t, parent], heap[t, i] = heap[t, i], heap[t, parent]
        i = parent


@numba.njit(cache=True)
def _pop(heap, size, t):  # pragma: no cover - numba
    top = heap[t, 0]
    size[t] -= 1
    n = size[t]
    heap[t, 0] = heap[t, n]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        c = left
        if left + 1 < n and heap[t, left + 1] < heap[t, left]:
            c = left + 1
        if heap[t, i] <= heap[t, c]:
            break
        heap[t, i], heap[t, c] = heap[t, c], heap[t, i]
        i = c
    return top


@numba.njit(cache=True)
def _reserve(ch_s, ch_e, state, b, length):  # pragma: no cover - numba
    """Earliest start >= b of a `length`-cycle gap in the channel's busy intervals (sorted,
    disjoint, from index state[0] to state[1]); reserve it and return the start."""
    h, n = state[0], state[1]
    cand = b
    j = h
    while j < n:
        if ch_e[j] <= cand:
            j += 1
            continue
        if ch_s[j] >= cand + length:
            break
        cand = ch_e[j]
        j += 1
    if n == ch_s.shape[0]:  # full: compact, and forget the oldest interval if still full
        m = n - h
        ch_s[:m] = ch_s[h:n].copy()
        ch_e[:m] = ch_e[h:n].copy()
        j -= h
        h, n = 0, m
        if n == ch_s.shape[0]:
            ch_s[: n - 1] = ch_s[1:n].copy()
            ch_e[: n - 1] = ch_e[1:n].copy()
            n -= 1
            j = max(j - 1, 0)
    ch_s[j + 1 : n + 1] = ch_s[j:n].copy()
    ch_e[j + 1 : n + 1] = ch_e[j:n].copy()
    ch_s[j] = cand
    ch_e[j] = cand + length
    state[0], state[1] = h, n + 1
    return cand


@numba.njit(cache=True)
def schedule(  # pragma: no cover - numba
    kind, unit, wt, sg, dur, bus, tail, hold, pre, pre_dep, pre_stream,
    latency, queue_depth, acc_sets, released, pre_start, early, follow, follow_lag,
):  # fmt: skip
    """Times of every executed instruction. Inputs are per executed instruction: control
    kind, unit id, tokens, occupancy of the unit in cycles (`dur`) and of the DRAM channel
    (`bus`, DMA only), drain cycles after it (`tail`) and whether it waits for the previous
    op's drain (`hold`), prelude cycles before it (`pre`), the op whose end its prelude waits
    for (`pre_dep`) and the part of the prelude that follows that end when it streams behind
    it (`pre_stream`, -1: no streaming); `acc_sets` output buffers per unit; `early`: the op
    signals its token when its work begins, not when it ends, and `follow` (-1: none): the
    executed op whose output this one reads as it is produced, so it ends no earlier than
    `follow_lag` cycles after that op (module docstring). Fills `released` (when the op
    released its unit: its end but for ops with a drain) and `pre_start` (when its prelude
    began; its start if it has none). Returns (dispatch, start, end, busy per unit, stall
    matrix, status): status 0 = ok, 1 = a token waited on was never signalled, 2 = token
    overflow."""
    n = kind.shape[0]
    dispatch = np.zeros(n, np.int64)
    start = np.zeros(n, np.int64)
    end = np.zeros(n, np.int64)
    busy = np.zeros(N_UNITS, np.int64)
    stall = np.zeros((N_UNITS, N_STALL), np.int64)
    heap = np.zeros((N_TOKENS, HEAP_CAP), np.int64)
    hsize = np.zeros(N_TOKENS, np.int64)
    unit_free = np.zeros(N_UNITS, np.int64)
    unit_done = np.zeros(N_UNITS, np.int64)  # completion of the unit's last instruction
    ring = np.zeros((N_UNITS, queue_depth), np.int64)  # start times of the last ops per unit
    ring_n = np.zeros(N_UNITS, np.int64)
    ch_s = np.zeros(CH_CAP, np.int64)  # DRAM channel busy intervals (sorted, disjoint)
    ch_e = np.zeros(CH_CAP, np.int64)
    ch = np.zeros(2, np.int64)  # first live interval, number of intervals
    n_sets = min(max(acc_sets, 1), MAX_ACC_SETS)
    set_free = np.zeros((N_UNITS, MAX_ACC_SETS), np.int64)  # drain ends of the last ops
    set_n = np.zeros(N_UNITS, np.int64)
    drain_end = np.zeros(N_UNITS, np.int64)  # end of the unit's last drain
    pk_free = np.zeros(N_UNITS, np.int64)  # the packer's end of its last prelude
    last_start = np.zeros(N_UNITS, np.int64)  # when the unit's last op began its work
    t_ctrl = 0
    for i in range(n):
        k = kind[i]
        u = unit[i]
        sig_t = -1
        if k in (K_BARRIER, K_HALT):
            drain = t_ctrl
            for v in range(N_UNITS):
                if unit_done[v] > drain:
                    drain = unit_done[v]
            stall[0, ST_BARRIER] += drain - t_ctrl
            dispatch[i] = drain
            start[i] = drain
            end[i] = drain + 1
            released[i] = drain + 1
            t_ctrl = drain + 1
            busy[0] += 1
            if k == K_HALT:
                return dispatch[: i + 1], start[: i + 1], end[: i + 1], busy, stall, 0
            continue
        if k in (K_UNIT, K_SYNC):
            # Dispatch into the unit's queue: wait for a free entry.
            d = t_ctrl
            if ring_n[u] >= queue_depth:
                slot_free = ring[u, ring_n[u] % queue_depth] + 1
                if slot_free > d:
                    stall[0, ST_QUEUE] += slot_free - d
                    d = slot_free
            dispatch[i] = d
            t_ctrl = d + 1
            busy[0] += 1
            head = d + 1
            if k == K_SYNC:
                if unit_done[u] > head:
                    head = unit_done[u]
            elif unit_free[u] > head:
                head = unit_free[u]
            s = head
            if wt[i] != 0:
                if hsize[wt[i]] == 0:
                    return dispatch[:i], start[:i], end[:i], busy, stall, 1
                tok = _pop(heap, hsize, wt[i])
                ready = tok >> _UNIT_BITS
                if ready > s:
                    stall[u, tok & ((1 << _UNIT_BITS) - 1)] += ready - s
                    s = ready
            if k == K_SYNC:
                e = s
                # the queue is in order: nothing behind the marker starts before it
                if e > unit_free[u]:
                    unit_free[u] = e
            elif bus[i] > 0:
                # intervals that end before dispatch can no longer matter
                while ch[0] < ch[1] and ch_e[ch[0]] <= d:
                    ch[0] += 1
                b = _reserve(ch_s, ch_e, ch, s, bus[i])
                if b > s:
                    stall[u, ST_DRAM] += b - s
                unit_free[u] = b + bus[i]
                busy[u] += bus[i]
                s = b
                e = b + bus[i] + latency
                if unit_done[u] > e:
                    e = unit_done[u]
            else:
                # an output buffer (the one the op acc_sets before used) and, with hold, the
                # previous op's drain
                free = set_free[u, set_n[u] % n_sets]
                if hold[i] and drain_end[u] > free:
                    free = drain_end[u]
                if free > s:
                    stall[u, ST_DRAIN] += free - s
                    s = free
                w0 = s  # when the op's own work begins: after its prelude
                if pre[i] > 0:
                    ps = d + 1
                    if pk_free[u] > ps:
                        ps = pk_free[u]
                    if last_start[u] > ps:
                        ps = last_start[u]
                    j = pre_dep[i]
                    if j >= 0 and pre_stream[i] >= 0:  # reads the masks as they are written
                        if start[j] > ps:
                            ps = start[j]
                        pm = ps + pre[i] - pre_stream[i]
                        if end[j] > pm:
                            pm = end[j]
                        pk_free[u] = pm + pre_stream[i]
                    else:
                        if j >= 0 and end[j] > ps:
                            ps = end[j]
                        pk_free[u] = ps + pre[i]
                    pre_start[i] = ps
                    if pk_free[u] > w0:
                        busy[u] += pk_free[u] - w0  # the part of the prelude not hidden
                        w0 = pk_free[u]
                last_start[u] = w0
                sig_t = w0
                e = w0 + dur[i]
                j = follow[i]
                if j >= 0 and end[j] + follow_lag[i] > e:  # waits for the producer's last output
                    stall[u, unit[j]] += end[j] + follow_lag[i] - e
                    e = end[j] + follow_lag[i]
                unit_free[u] = e
                released[i] = e
                busy[u] += dur[i]
                if tail[i] > 0:
                    if drain_end[u] > e:
                        e = drain_end[u]
                    e += tail[i]
                    drain_end[u] = e
                set_free[u, set_n[u] % n_sets] = e
                set_n[u] += 1
            if e > unit_done[u]:
                unit_done[u] = e
            if bus[i] > 0 or k == K_SYNC:
                released[i] = e
            if k == K_SYNC or pre[i] == 0:
                pre_start[i] = s
            start[i] = s
            end[i] = e
            ring[u, ring_n[u] % queue_depth] = s
            ring_n[u] += 1
        else:
            # Control instruction executed by the controller itself.
            s = t_ctrl
            if k == K_SKIP and unit_done[u] > s:  # reads the skip flags the GSU wrote
                stall[0, u] += unit_done[u] - s
                s = unit_done[u]
            if wt[i] != 0:
                if hsize[wt[i]] == 0:
                    return dispatch[:i], start[:i], end[:i], busy, stall, 1
                tok = _pop(heap, hsize, wt[i])
                ready = tok >> _UNIT_BITS
                if ready > s:
                    stall[0, tok & ((1 << _UNIT_BITS) - 1)] += ready - s
                    s = ready
            dispatch[i] = s
            start[i] = s
            e = s + dur[i]
            end[i] = e
            released[i] = e
            t_ctrl = e
            busy[0] += dur[i]
        if sg[i] != 0:
            if hsize[sg[i]] >= HEAP_CAP:
                return dispatch[: i + 1], start[: i + 1], end[: i + 1], busy, stall, 2
            t_sig = sig_t if early[i] and sig_t >= 0 else end[i]
            _push(heap, hsize, sg[i], (t_sig << _UNIT_BITS) | u)
    return dispatch, start, end, busy, stall, 0
