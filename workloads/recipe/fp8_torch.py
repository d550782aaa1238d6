"""Torch twin of `simulator.numerics.quantize` for float32 tensors, bit for bit.

The algorithm is the numerics kernel's (`simulator/numerics/_kernels.py`), vectorised on the
int32 bit pattern of the float32 input, widened to int64: the target grid at a magnitude is a
sub-grid of float32's, so rounding clears the low `shift` bits and maybe adds one target ULP; a
carry into the exponent field is exactly the step to the next binade. Format parameters come
from `simulator.numerics.get_format` (the one definition); nothing about formats is re-defined.
tests/workloads/test_fp8_torch.py proves equality with the numpy quantizer on the same inputs
and random bits, edge cases included.
"""

from __future__ import annotations

import torch

from simulator.numerics import STOCHASTIC, FloatFormat, InfNan, get_format

_MBITS, _EBITS, _BIAS = 23, 8, 127
_ABS_MASK = (1 << 31) - 1
_INF_ABS = 0xFF << _MBITS
_NAN_ABS = _INF_ABS | (1 << (_MBITS - 1))  # canonical quiet NaN
_MAX_SHIFT = 62  # int64 shifts beyond this are treated as "everything discarded"

MODES = ("rne", "rna", "rtz", "sr", "sr_half", "sr_corrected")


def _f32_bits(v: float) -> int:
    return int(torch.tensor([v], dtype=torch.float32).view(torch.int32).item())


def _shl(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.bitwise_left_shift(v, s.clamp(0, _MAX_SHIFT))


def _shr(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.bitwise_right_shift(v, s.clamp(0, _MAX_SHIFT))


def _round_up(
    D: torch.Tensor, shift: torch.Tensor, k_odd: torch.Tensor, mode: str, S: torch.Tensor, r: int
) -> torch.Tensor:
    """1 where the magnitude steps up one target ULP; D holds the `shift` discarded bits."""
    one = torch.ones_like(D)
    if mode == "rtz":
        return torch.zeros_like(D)
    if mode in ("rne", "rna"):
        half = _shl(one, shift - 1)
        tie_up = torch.ones_like(D, dtype=torch.bool) if mode == "rna" else k_odd == 1
        up = (half < D) | ((half == D) & tie_up)
        return (up & (shift <= _MAX_SHIFT)).to(torch.int64)
    if mode in ("sr", "sr_half"):
        rr = r if mode == "sr" else r + 1
        f = torch.where(shift <= rr, _shl(D, rr - shift), _shr(D, shift - rr))
        f = torch.where(shift - rr > _MAX_SHIFT, torch.zeros_like(f), f)
        if mode == "sr":
            return (f + S >= (1 << r)).to(torch.int64)
        return (f + 2 * S + 1 >= (1 << rr)).to(torch.int64)
    # sr_corrected: rne(d * 2**r) + S >= 2**r
    s2 = shift - r
    q = _shr(D, s2)
    rem = D & (_shl(one, s2) - 1)
    half2 = _shl(one, s2 - 1)
    q = q + ((rem > half2) | ((rem == half2) & ((q & 1) == 1))).to(torch.int64)
    g = torch.where(shift <= r, _shl(D, r - shift), q)
    g = torch.where(s2 > _MAX_SHIFT, torch.zeros_like(g), g)
    return (g + S >= (1 << r)).to(torch.int64)


def _pow2_bits(p: torch.Tensor) -> torch.Tensor:
    """float32 bit pattern of 2**p (p inside float32's range, subnormals included)."""
    normal = torch.bitwise_left_shift(p + _BIAS, torch.tensor(_MBITS))
    sub = _shl(torch.ones_like(p), p - (1 - _BIAS - _MBITS))
    return torch.where(p >= 1 - _BIAS, normal, sub)


def quantize_torch(
    x: torch.Tensor,
    fmt: str | FloatFormat,
    rounding: str = "rne",
    *,
    r: int | None = None,
    random_bits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Round a float32 tensor onto `fmt`'s grid; same semantics as `simulator.numerics.quantize`.

    `random_bits` (integers in [0, 2**r), one per element, any integer dtype) are required for
    the stochastic modes. Returns a new float32 tensor on `x`'s device; no autograd.
    """
    f = get_format(fmt)
    if x.dtype != torch.float32:
        raise TypeError(f"quantize_torch takes float32 tensors, not {x.dtype}")
    if rounding not in MODES:
        raise ValueError(f"unknown rounding {rounding!r}; choose one of {list(MODES)}")
    if rounding in STOCHASTIC:
        if r is None or not 1 <= int(r) <= 32:
            raise ValueError(f"rounding {rounding!r} needs r in 1..32 (got {r})")
        if random_bits is None or tuple(random_bits.shape) != tuple(x.shape):
            raise ValueError(f"rounding {rounding!r} needs random_bits of shape {tuple(x.shape)}")
        r = int(r)
        S = random_bits.to(torch.int64).reshape(-1)
    else:
        if random_bits is not None:
            raise ValueError(f"rounding {rounding!r} is deterministic; it takes no random bits")
        r = 0
        S = torch.zeros(1, dtype=torch.int64, device=x.device)

    max_abs = _f32_bits(f.max_value)
    if f.inf_nan is InfNan.IEEE:
        ovf_to, inf_to = (max_abs, _INF_ABS) if f.saturate else (_INF_ABS, _INF_ABS)
    elif f.inf_nan is InfNan.FN:
        ovf_to, inf_to = (max_abs, max_abs) if f.saturate else (_NAN_ABS, _NAN_ABS)
    else:
        ovf_to = inf_to = max_abs

    with torch.no_grad():
        raw = x.detach().contiguous().view(torch.int32).reshape(-1).to(torch.int64)
        neg = raw < 0
        a = raw & _ABS_MASK
        e_field = a >> _MBITS
        m_field = a & ((1 << _MBITS) - 1)
        is_special = e_field == 0xFF
        is_nan = is_special & (m_field != 0)
        if bool(is_nan.any()) and not f.has_nan:
            first = int(torch.nonzero(is_nan)[0])
            raise ValueError(
                f"input holds NaN (first at flat index {first}) but format {f.name!r} has no NaN"
            )
        normal = e_field > 0
        e_eff = torch.where(normal, e_field - _BIAS, torch.full_like(e_field, 1 - _BIAS))
        M = torch.where(normal, m_field | (1 << _MBITS), m_field)
        e_top = torch.where(normal, e_eff, torch.full_like(e_eff, -100000))
        floor_lsb = f.emin - f.man_bits if f.subnormals else f.emin
        lsb_exp = torch.where(
            e_top >= f.emin, e_top - f.man_bits, torch.full_like(e_top, floor_lsb)
        )
        shift = lsb_exp - (e_eff - _MBITS)

        one = torch.ones_like(a)
        # Part of the significand kept (shift in 1..23).
        D = M & (_shl(one, shift) - 1)
        k_odd = _shr(M, shift) & 1
        up_mid = _round_up(D, shift, k_odd, rounding, S, r)
        res_mid = _shl(_shr(a, shift), shift) + _shl(up_mid, shift)
        # Whole significand discarded (shift > 23): k = 0.
        up_low = _round_up(M, shift, torch.zeros_like(M), rounding, S, r)
        res_low = torch.where(up_low == 1, _pow2_bits(lsb_exp), torch.zeros_like(a))

        res = torch.where(shift <= 0, a, torch.where(shift <= _MBITS, res_mid, res_low))
        over = res > max_abs
        if rounding == "rtz":
            res = torch.where(over, torch.full_like(res, max_abs), res)
        else:
            res = torch.where(over, torch.full_like(res, ovf_to), res)
        res = torch.where(a == 0, a, res)
        res = torch.where(is_special, torch.full_like(res, inf_to), res)
        res = torch.where(is_nan, torch.full_like(res, _NAN_ABS), res)
        res = torch.where(neg, res | (-(1 << 31)), res)
        return res.to(torch.int32).view(torch.float32).reshape(x.shape)
