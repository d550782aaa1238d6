"""tc.wgr's one-pass operand helpers equal the numpy compositions they replace.

`prepare_columns` (dY (P, K) transposed, chunked and decoded in one pass) against
`prepare_operand` of the transposed, zero-padded chunks; `acc_decode_t` / `acc_encode_t`
(the accumulators decoded / encoded transposed) against `acc_decode(...).T` /
`acc_encode(....T)`, bit for bit, including -0, edge shapes and the refusal of a value the
format cannot hold."""

import numpy as np
import pytest

from simulator.functional.tree import (
    acc_decode,
    acc_decode_t,
    acc_encode,
    acc_encode_t,
    prepare_columns,
    prepare_operand,
)
from simulator.numerics import decode

OPF, ACCF = "e5m2_chip", "fp16_chip"


def _chunked_t(X: np.ndarray, dp: int) -> np.ndarray:
    """The previous tc.wgr path: X.T, zero-padded to whole chunks, (K, S, dp)."""
    t = np.ascontiguousarray(X.T)
    pad = -t.shape[1] % dp
    if pad:
        t = np.concatenate([t, np.zeros((t.shape[0], pad), np.uint8)], axis=1)
    return t.reshape(t.shape[0], -1, dp)


def _same_prepared(a, b) -> bool:
    return (
        a.fmt == b.fmt
        and a.codes.shape == b.codes.shape
        and np.array_equal(a.codes, b.codes)
        and a.v.shape == b.v.shape
        and np.array_equal(a.v.view(np.int64), b.v.view(np.int64))
    )


@pytest.mark.parametrize("P", [1, 7, 8, 9, 64, 1024])
@pytest.mark.parametrize("K", [1, 10, 16, 64])
@pytest.mark.parametrize("dp", [4, 8])
def test_prepare_columns_equals_prepare_operand(P, K, dp):
    rng = np.random.default_rng(P * 1000 + K * 10 + dp)
    X = rng.integers(0, 256, (P, K), dtype=np.uint8)  # every code, -0 (0x80) among them
    X[rng.random((P, K)) < 0.3] = 0
    X[:, 0] = 0  # an all-zero column: every bound passes
    got = prepare_columns(X, dp, OPF)
    assert _same_prepared(got, prepare_operand(_chunked_t(X, dp), OPF))


def test_prepare_columns_strided_input():
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    X = big[::2, 3:40:3]  # not contiguous
    assert _same_prepared(prepare_columns(X, 8, OPF), prepare_operand(_chunked_t(X, 8), OPF))
    with pytest.raises(ValueError):
        prepare_columns(np.zeros((2, 3, 4), np.uint8), 8, OPF)


@pytest.mark.parametrize("shape", [(256, 256), (1, 1), (1, 37), (37, 1), (64, 288), (16, 144)])
def test_acc_decode_t_and_encode_t(shape):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    every = np.arange(1 << 16, dtype=np.uint16)  # every word once (256 x 256), else random
    w = every if shape == (256, 256) else rng.integers(0, 1 << 16, shape[0] * shape[1])
    w = w.astype(np.uint16).reshape(shape)
    vt = acc_decode_t(w, ACCF)
    ref = np.ascontiguousarray(acc_decode(w, ACCF).T)
    assert vt.shape == ref.shape and vt.flags.c_contiguous
    assert np.array_equal(vt.view(np.int64), ref.view(np.int64))
    got = acc_encode_t(vt, ACCF)
    assert got.shape == shape
    assert np.array_equal(got, acc_encode(vt.T, ACCF))
    # the words' canonical codes (exponent field 0 is zero: those words come back 0 or -0)
    assert np.array_equal(got, acc_encode(acc_decode(w, ACCF), ACCF))
    zeros = (w & 0x7C00) == 0
    assert np.array_equal(got[zeros], w[zeros] & 0x8000)
    assert np.array_equal(got[~zeros], w[~zeros])


def test_acc_encode_t_refuses_as_acc_encode():
    v = acc_decode(np.arange(1 << 12, dtype=np.uint16), ACCF).reshape(64, 64)
    v[40, 17] = 2.0**-20  # below the smallest normal: not a value of the format
    with pytest.raises(ValueError) as want:
        acc_encode(v.T, ACCF)
    with pytest.raises(ValueError) as got:
        acc_encode_t(v, ACCF)
    assert str(got.value) == str(want.value)


def test_codecs_t_other_formats():
    """Formats outside the one-pass codecs (IEEE fp16 with subnormals) take the plain path."""
    rng = np.random.default_rng(5)
    w = rng.integers(0, 0x7C00, (5, 9)).astype(np.uint16)  # finite positive fp16 words
    vt = acc_decode_t(w, "fp16")
    assert np.array_equal(vt, decode(w, "fp16").astype(np.float64).T)
    assert np.array_equal(acc_encode_t(vt, "fp16"), acc_encode(vt.T, "fp16"))
    c = rng.integers(0, 256, (6, 4)).astype(np.uint8)  # an 8-bit format: 8-bit codes
    vt8 = np.ascontiguousarray(decode(c, OPF).astype(np.float64).T)
    assert np.array_equal(acc_encode_t(vt8, OPF), acc_encode(vt8.T, OPF))
