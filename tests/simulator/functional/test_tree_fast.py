"""The vectorised RNE kernel (exact-sum fast path + integer fallback) equals the integer rule.

Each case compares `tree_accumulate` (fast) with the plain integer kernel (`fast=False`) on
whole tiles, and a smaller slice with `dot_product_step` step by step. The distributions aim
at the fast path's edges: narrow spans (all fast), wide exponent spreads (mostly fallback),
cancellation to zero and to tiny sums, saturation at the accumulator's largest value, sums
below the smallest normal, and accumulators (including -0) that raise or lower the grid."""

import numpy as np
import pytest

from simulator.functional.tree import (
    _NO_WFMT,
    _NO_WORDS,
    _rne_args,
    _tree_rne,
    acc_decode,
    acc_encode,
    accumulate_gate_groups,
    accumulator_words,
    code_fields,
    prepare_operand,
    tree_accumulate,
    tree_accumulate_words,
)
from simulator.numerics import decode, encode
from simulator.numerics.dot_product import dot_product_step

OPF, ACCF = "e5m2_chip", "fp16_chip"


def _codes(rng, shape, lo, hi, zero_frac):
    sign = rng.integers(0, 2, shape) << 7
    exp = rng.integers(lo, hi + 1, shape) << 2
    man = rng.integers(0, 4, shape)
    c = (sign | exp | man).astype(np.uint8)
    c[rng.random(shape) < zero_frac] = 0
    return c


def _case(kind, rng, P, K, S, D=8):
    if kind == "narrow":  # every step on the fast path
        A, B = _codes(rng, (P, S, D), 14, 16, 0.1), _codes(rng, (K, S, D), 14, 16, 0.1)
        acc = np.zeros((P, K))
    elif kind == "wide":  # uniformly random codes: spreads far beyond the grid
        A = rng.integers(0, 256, (P, S, D)).astype(np.uint8)
        B = rng.integers(0, 256, (K, S, D)).astype(np.uint8)
        acc = decode(rng.integers(0, 1 << 16, (P, K)).astype(np.uint16), ACCF)
    elif kind == "cancel":  # B's second half negates its first: products cancel in pairs
        A = _codes(rng, (P, S, D), 10, 20, 0.05)
        A[:, :, D // 2 :] = A[:, :, : D // 2]
        B = _codes(rng, (K, S, D), 10, 20, 0.05)
        B[:, :, D // 2 :] = B[:, :, : D // 2] ^ 0x80
        flip = rng.random((K, S, D // 2)) < 0.3  # some pairs do not cancel
        B[:, :, D // 2 :][flip] ^= 0x80
        acc = decode(rng.integers(0x3000, 0x5000, (P, K)).astype(np.uint16), ACCF)
    elif kind == "saturate":  # products near the operands' top: the accumulator saturates
        A, B = _codes(rng, (P, S, D), 26, 31, 0.1), _codes(rng, (K, S, D), 20, 31, 0.1)
        acc = decode(rng.integers(0x7800, 0x8000, (P, K)).astype(np.uint16), ACCF)
        acc[rng.random((P, K)) < 0.5] *= -1
    elif kind == "tiny":  # sums around and below the accumulator's smallest normal (2**-14)
        A, B = _codes(rng, (P, S, D), 1, 9, 0.2), _codes(rng, (K, S, D), 1, 9, 0.2)
        acc = decode(rng.integers(0, 0x0C00, (P, K)).astype(np.uint16), ACCF)
        acc[rng.random((P, K)) < 0.5] *= -1
    elif kind == "mixed":  # near the bias with some wild codes and accumulators of all sizes
        A, B = _codes(rng, (P, S, D), 8, 22, 0.2), _codes(rng, (K, S, D), 8, 22, 0.2)
        for X in (A, B):
            wild = rng.random(X.shape) < 0.05
            X[wild] = rng.integers(0, 256, int(wild.sum()))
        acc = decode(rng.integers(0, 1 << 16, (P, K)).astype(np.uint16), ACCF)
    else:
        raise ValueError(kind)
    return A, B, np.asarray(acc, np.float64)


def _run(A, B, acc, align, fast, active=None):
    out = acc.copy()
    tree_accumulate(A, B, out, operand_format=OPF, accumulator_format=ACCF, align_bits=align,
                    fast=fast, active=active)  # fmt: skip
    return out


KINDS = ["narrow", "wide", "cancel", "saturate", "tiny", "mixed"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("align", [11, 24, 49])
def test_fast_equals_integer_kernel(kind, align):
    rng = np.random.default_rng(hash((kind, align)) % (1 << 32))
    A, B, acc = _case(kind, rng, 37, 45, 23)
    active = rng.random(acc.shape) < 0.9
    fast, slow = _run(A, B, acc, align, True, active), _run(A, B, acc, align, False, active)
    assert np.array_equal(fast.view(np.int64), slow.view(np.int64))  # +0 / -0 included
    assert np.array_equal(fast[~active].view(np.int64), acc[~active].view(np.int64))


@pytest.mark.parametrize("kind", ["narrow", "mixed"])
def test_fully_gated_rows_are_left_alone(kind):
    """Rows with no active output (a gated pixel's whole tile, which the kernel skips) keep
    their accumulators bit for bit; the other rows equal the integer kernel's."""
    rng = np.random.default_rng(len(kind) + 7)
    A, B, acc = _case(kind, rng, 40, 16, 9)
    active = rng.random(acc.shape) < 0.7
    active[::3] = False  # every third row fully gated
    fast, slow = _run(A, B, acc, 24, True, active), _run(A, B, acc, 24, False, active)
    assert np.array_equal(fast.view(np.int64), slow.view(np.int64))
    assert np.array_equal(fast[::3].view(np.int64), acc[::3].view(np.int64))
    assert not np.array_equal(fast[1::3], acc[1::3])  # the others did change


@pytest.mark.parametrize("kind", ["narrow", "mixed"])
def test_rows_gated_at_their_ends(kind):
    """Channel gating closes whole groups of a row's outputs; the kernel computes only from
    the row's first to its last active output. Rows whose leading, trailing or middle groups
    are closed equal the integer kernel's; every gated output keeps its accumulator."""
    rng = np.random.default_rng(len(kind) + 11)
    A, B, acc = _case(kind, rng, 48, 32, 9)
    groups = rng.random((48, 4)) < 0.5
    groups[0], groups[1], groups[2] = [False, True, True, False], [True] * 4, [False] * 4
    active = np.repeat(groups, 8, axis=1)
    fast, slow = _run(A, B, acc, 24, True, active), _run(A, B, acc, 24, False, active)
    assert np.array_equal(fast.view(np.int64), slow.view(np.int64))
    assert np.array_equal(fast[~active].view(np.int64), acc[~active].view(np.int64))
    assert not np.array_equal(fast[active], acc[active])


@pytest.mark.parametrize("kind", KINDS)
def test_fast_equals_dot_product_step(kind):
    rng = np.random.default_rng(len(kind))
    P, K, S, D = 6, 9, 11, 8
    A, B, acc = _case(kind, rng, P, K, S, D)
    acc += 0.0  # -0 -> +0: dot_product_step keeps a -0 accumulator through a zero step, the
    # tile kernels write +0 (the executor never holds a -0 accumulator)
    got = _run(A, B, acc, 24, True)
    ref = encode(acc.astype(np.float32), ACCF)
    a = np.broadcast_to(A[:, None], (P, K, S, D))
    b = np.broadcast_to(B[None, :], (P, K, S, D))
    for s in range(S):
        ref = dot_product_step(a[:, :, s], b[:, :, s], ref, OPF, "rne", align_bits=24)
        ref[ref == 0x8000] = 0  # an underflow to zero: -0 in quantize, +0 in the tile kernels
    assert np.array_equal(encode(got, ACCF), ref)


def test_fast_kernel_dp_width_and_zero_rows():
    """dp_width other than 8, all-zero operand rows and steps, -0 accumulators become +0."""
    rng = np.random.default_rng(7)
    A, B, acc = _case("mixed", rng, 5, 70, 9, 4)
    A[1] = 0
    A[2, 3] = 0x80  # -0 codes only
    B[:, 4] = 0
    acc[3, :] = -0.0
    fast, slow = _run(A, B, acc, 24, True), _run(A, B, acc, 24, False)
    assert np.array_equal(fast.view(np.int64), slow.view(np.int64))
    assert not np.signbit(fast[fast == 0]).any()


def test_accumulator_words_round_trip():
    """acc_decode / acc_encode equal decode / encode on every 16-bit word; unrepresentable
    values still raise."""
    w = np.arange(1 << 16, dtype=np.uint16)
    v = acc_decode(w, ACCF)
    ref = decode(w, ACCF).astype(np.float64)
    assert np.array_equal(v.view(np.int64), ref.view(np.int64))
    assert np.array_equal(acc_encode(v, ACCF), encode(ref.astype(np.float32), ACCF))
    with pytest.raises(ValueError):
        acc_encode(np.array([1.0 + 2.0**-20]), ACCF)
    bad = v[:5000].copy()  # one unrepresentable value among many (found after the loop)
    bad[4321] = 2.0**-20
    with pytest.raises(ValueError):
        acc_encode(bad, ACCF)
    c = np.arange(256, dtype=np.uint8)  # the FP8 operands (the SRUs' output codes)
    v8 = decode(c, OPF)
    assert np.array_equal(acc_encode(v8.astype(np.float64), OPF), encode(v8, OPF))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fast", [True, False])
def test_operands_swapped(kind, fast):
    """The rule is symmetric in A and B (tc.wgr passes its patches as A and the dY tile as
    the prepared B, accumulators transposed): equal bit for bit, zeros' signs included."""
    rng = np.random.default_rng(len(kind) + 100 * fast)
    A, B, acc = _case(kind, rng, 29, 13, 17)
    acc[rng.random(acc.shape) < 0.1] = -0.0
    A[3] = 0
    B[2, 5] = 0
    active = rng.random(acc.shape) < 0.85
    ab = _run(A, B, acc, 24, fast, active)
    accT = np.ascontiguousarray(acc.T)
    tree_accumulate(B, prepare_operand(A, OPF), accT, operand_format=OPF, accumulator_format=ACCF,
                    align_bits=24, fast=fast, active=np.ascontiguousarray(active.T))  # fmt: skip
    assert np.array_equal(ab.view(np.int64), accT.T.view(np.int64))


def test_code_fields_hold_for_the_chip_format_only_where_checked():
    """The kernel reads A's slots and LSBs from the codes' bits where `code_fields` found the
    tables to follow them code by code (the chip's e5m2, no subnormals)."""
    assert code_fields(OPF) == (2, 31, -14)
    assert code_fields("fp16") == (-1, 0, 0)  # not an 8-bit format: the tables


@pytest.mark.parametrize("kind", KINDS)
def test_bounds_from_the_codes_bits_equal_the_tables(kind):
    rng = np.random.default_rng(len(kind) + 500)
    A, B, acc = _case(kind, rng, 31, 19, 13)
    A[3] = 0
    A[4, 2] = 0x80  # a step of -0 codes only
    consts = _rne_args(OPF, ACCF, 24)
    out = []
    for fields in (consts[-3:], (np.int64(-1), np.int64(0), np.int64(0))):
        a = acc.copy()
        _tree_rne(A, B, prepare_operand(B, OPF).v, a, np.ones(a.shape, np.bool_), _NO_WORDS, 0,
                  _NO_WFMT, *consts[:-3], *fields)  # fmt: skip
        out.append(a)
    assert np.array_equal(out[0].view(np.int64), out[1].view(np.int64))


@pytest.mark.parametrize("kind", ["narrow", "mixed", "saturate"])
@pytest.mark.parametrize("from_zero", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_accumulators_as_words_equal_the_values(kind, from_zero, transposed):
    """The kernel decoding and encoding the accumulator words itself (any strides: tc.wgr's
    are a transposed view) gives the words of the float64 path's values; outputs it does not
    store keep their words, or are zeros when it starts from zeros."""
    rng = np.random.default_rng(len(kind) + 31 * from_zero + 7 * transposed)
    A, B, acc = _case(kind, rng, 29, 24, 7)
    active = rng.random(acc.shape) < 0.8
    active[::5] = False  # fully gated rows
    active[1, :8] = active[2, 16:] = False  # rows gated at their ends
    start = np.zeros_like(acc) if from_zero else acc
    want = acc_encode(_run(A, B, start, 24, True, active), ACCF).view(np.uint16)
    garbage = rng.integers(0, 1 << 16, acc.shape).astype(np.uint16)
    init = garbage if from_zero else acc_encode(acc, ACCF).view(np.uint16)
    store = np.ascontiguousarray(init.T).T if transposed else init.copy()
    assert store.flags.c_contiguous != transposed
    tree_accumulate_words(A, B, store, from_zero=from_zero, operand_format=OPF,
                          accumulator_format=ACCF, align_bits=24, active=active)  # fmt: skip
    assert np.array_equal(store, want)
    assert accumulator_words(OPF, ACCF, 24) and not accumulator_words(OPF, ACCF, 8)


@pytest.mark.parametrize("from_zero", [False, True])
def test_gate_groups_on_words_equal_the_values(from_zero):
    """tc.wgr's gate groups with the accumulators as a transposed view of words: the words
    of the float64 path's values (a group with no open pixel included)."""
    rng = np.random.default_rng(41 + from_zero)
    taps, cn, P, kn, g = 4, 8, 37, 48, 16
    rows = _codes(rng, (P * cn,), 8, 22, 0.3)
    starts = rng.integers(-1, P, (taps, P)) * cn
    starts[starts < 0] = -1
    dy = _codes(rng, (P, kn), 8, 22, 0.2)
    gate = rng.random((P, kn // g)) < 0.6
    gate[:, 1] = False  # a group with no open pixel
    acc = decode(rng.integers(0, 1 << 15, (taps * cn, kn)).astype(np.uint16), ACCF)
    acc = np.asarray(acc, np.float64)
    activeT = rng.random(acc.shape) < 0.9
    kw = dict(operand_format=OPF, accumulator_format=ACCF, align_bits=24)
    vals = np.zeros_like(acc) if from_zero else acc.copy()
    assert accumulate_gate_groups(rows, starts, cn, dy, gate, g, 8, vals, activeT, **kw)
    init = rng.integers(0, 1 << 16, (kn, taps * cn)).astype(np.uint16)
    if not from_zero:
        init = np.ascontiguousarray(acc_encode(acc, ACCF).view(np.uint16).T)
    words = init.T  # (taps cn, kn), strided as tc.wgr's
    assert accumulate_gate_groups(rows, starts, cn, dy, gate, g, 8, words, activeT, **kw,
                                  from_zero=from_zero)  # fmt: skip
    assert np.array_equal(words, acc_encode(vals, ACCF).view(np.uint16))
    assert not np.array_equal(vals, acc)
