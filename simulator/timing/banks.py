"""Buffer bank conflicts from the access pattern of each op.

Model (assumed; the chip's banking is not published): every on-chip buffer has `banks` banks
of `word_bytes`-wide words, word-interleaved (word w lives in bank w mod banks); a bank has one
read and one write port (1R1W), so in one cycle it serves one read word and one write word.
Accesses issued in the same cycle to *different words of the same bank* on the same port
serialise; the same word read by several consumers is one read (a broadcast). The DMA engines
reach the buffers through their own port of the double-buffered slot and are not counted
against the compute units (an assumption).

An op's accessors advance through their operands in lock step (one word per cycle each), so
the bank offsets between them, hence the conflict degree, are the same in every cycle: the op
takes `degree` times its conflict-free cycles, and the extra cycles are reported as the unit's
`bank` stall.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def conflict_degree(addresses: Iterable[int], word_bytes: int, banks: int) -> int:
    """Cycles one set of same-cycle accesses (byte addresses, one port) needs: the largest
    number of distinct words any one bank must deliver (1 = no conflict)."""
    per_bank: dict[int, set[int]] = {}
    for a in addresses:
        w = int(a) // word_bytes
        per_bank.setdefault(w % banks, set()).add(w)
    return max((len(s) for s in per_bank.values()), default=1)


def sfu_degree(
    reads: Sequence[tuple[int, np.ndarray]],
    writes: Sequence[tuple[int, np.ndarray]],
    geometry: dict[int, tuple[int, int]],
) -> np.ndarray:
    """Per executed SFU op, its conflict degree: `reads` / `writes` are (buffer id, byte
    address per execution) of its operands; `geometry` buffer id -> (word_bytes, banks)."""
    n = len(reads[0][1]) if reads else 0
    out = np.ones(n, np.int64)
    for port in (reads, writes):
        by_buf: dict[int, list[np.ndarray]] = {}
        for buf, addr in port:
            by_buf.setdefault(buf, []).append(np.asarray(addr, np.int64))
        for buf, addrs in by_buf.items():
            if len(addrs) < 2:
                continue
            word, banks = geometry[buf]
            words = np.stack(addrs, axis=1) // word  # (n, operands)
            # pairs in the same bank at different words conflict; with at most a few operands
            # the degree is 1 + the largest count of other distinct words in one's bank
            deg = np.ones(n, np.int64)
            for i in range(words.shape[1]):
                same_bank = (words % banks) == (words[:, i : i + 1] % banks)
                other_word = words != words[:, i : i + 1]
                deg = np.maximum(deg, 1 + (same_bank & other_word).sum(axis=1))
            out = np.maximum(out, deg)
    return out


def pair_degree(a: np.ndarray, b: np.ndarray, word_bytes, banks) -> np.ndarray:
    """`sfu_degree` of many SFU executions at once whose two read operands lie in one buffer
    (byte addresses a, b; word_bytes and banks per execution or scalars) and whose write
    port has one operand: 2 where the two words differ in one bank, else 1."""
    wa, wb = a // word_bytes, b // word_bytes
    return np.where((wa % banks == wb % banks) & (wa != wb), 2, 1)


def split_degree(stride_bytes: int, share: int, word_bytes: int, banks: int) -> int:
    """Tensor-core cores that split an op's pixels (or outputs) interleaved read the streamed
    operand `stride_bytes` apart in the same cycle: their conflict degree."""
    if share <= 1:
        return 1
    return conflict_degree((j * stride_bytes for j in range(share)), word_bytes, banks)
