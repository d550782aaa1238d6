"""The SRUs' `tensor_bits` source (docs/functional.md): each lane rounds with the first r bits
that its neighbour lane's rounding discards; the executor against the reference with it."""

import numpy as np
import pytest
import torch

from simulator.config import load_config
from simulator.functional import Modes
from simulator.functional import sru as sru_mod
from simulator.functional.compare import VerifyError, config_for, prepare_model, verify_step
from simulator.functional.loader import read_weights
from simulator.functional.reference import Numerics, Reference
from simulator.functional.sru import SRUs
from simulator.functional.state import Machine
from simulator.numerics import decode, quantize
from simulator.numerics.random_sources import discarded_words, neighbour_index

FMT = "e5m2_chip"


def test_neighbour_is_the_next_lane_of_the_same_cycle():
    # 10 results on 4 lanes: cycles [0..3], [4..7], [8, 9]; each cycle's last lane wraps
    assert neighbour_index(10, 4).tolist() == [1, 2, 3, 0, 5, 6, 7, 4, 9, 8]
    assert neighbour_index(1, 4).tolist() == [0]  # a lone result takes its own bits
    assert neighbour_index(3, 1).tolist() == [0, 1, 2]


def test_discarded_words_by_hand():
    x = np.array([1.0, 1 + 2**-4 + 2**-10, 1.5 + 2**-3 + 2**-9, -(1 + 2**-4 + 2**-10), 2**-15, 0])
    # spacing 2**-2 in [1, 2): d = 2**-2 + 2**-8 -> 65; d = 1/2 + 2**-7 -> 130; the sign is
    # ignored; below the smallest normal (2**-14, no subnormals) the spacing is 2**-14
    assert discarded_words(x, FMT, 8).tolist() == [0, 65, 130, 65, 128, 0]
    assert discarded_words(x, FMT, 3).tolist() == [0, 2, 4, 2, 4, 0]


def test_the_word_is_the_sr_threshold():
    """With S = 2**r - w the sum reaches 2**r (round away), with one less it does not: the
    word is exactly the floor(d 2**r) of the `sr` decision in `quantize`."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(4000) * 4.0 ** rng.integers(-6, 6, 4000)).astype(np.float32)
    w = discarded_words(x, FMT, 8).astype(np.int64)
    x, w = x[w > 0], w[w > 0]
    down = quantize(x, FMT, "rtz")
    below = quantize(x, FMT, "sr", r=8, random_bits=256 - w - 1)
    at = quantize(x, FMT, "sr", r=8, random_bits=256 - w)
    assert np.array_equal(below, down)
    assert np.all(np.abs(at) > np.abs(down))


def _srus(record: bool) -> SRUs:
    cfg = load_config("ref28")
    m = Machine.create(cfg, 1024, record) if record else None
    s = SRUs(FMT, 4, machine=m)
    s.configure("act", 8, "sr", "tensor_bits", 16, "per_lane", 1)
    return s


def test_sru_rounds_a_hand_made_stream():
    # 1 + w 2**-10 discards w / 256 of a spacing: its word is w
    w = [10, 200, 37, 255, 128, 3]
    x = np.array([1 + v * 2.0**-10 for v in w], np.float32)
    # neighbours (4 lanes): 1, 2, 3, 0 | 5, 4 -> sums 210, 237, 292, 265 | 131, 131
    codes = _srus(False).round("act", x)
    assert decode(codes, FMT).tolist() == [1.0, 1.0, 1.25, 1.25, 1.0, 1.0]


def test_recorded_tags_are_cycle_and_lane():
    s = _srus(True)
    x = np.full(6, 1 + 2.0**-9, np.float32)
    s.round("act", x, ("act", 0))
    s.round("act", x[:3], ("act", 16))
    bits = s.machine.bits["act"]
    # 6 results take cycles 0 and 1 (lanes 0-3, 0-1); the next op starts at cycle 2
    assert bits[:6].tolist() == [0, 1, 2, 3, 4, 5]
    assert bits[16:19].tolist() == [8, 9, 10]


def _reference(lanes: int = 4) -> Reference:
    ref = object.__new__(Reference)  # only the numerics are needed
    ref.num = Numerics(r=8, source="tensor_bits", lanes=lanes)
    return ref


def test_reference_discarded_bits_agree_with_the_numerics():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(5000) * 4.0 ** rng.integers(-9, 9, 5000)).astype(np.float32)
    got = _reference().discarded(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, discarded_words(x, FMT, 8))


def test_reference_pairs_results_by_tag():
    w = [10, 200, 37, 255, 128, 3]
    x = torch.tensor([1 + v * 2.0**-10 for v in w])
    tags = torch.tensor([9, 8, 5, 4, 7, 6])  # cycle 2: lanes 1, 0; cycle 1: lanes 1, 0, 3, 2
    # cycle 2: lane 0 (w 200) takes lane 1's 10, lane 1 (the last) lane 0's 200;
    # cycle 1: lane 0 (255) <- lane 1 (37) <- lane 2 (3) <- lane 3 (128) <- lane 0 (255)
    assert _reference().tensor_bits(x, tags).tolist() == [200, 10, 3, 37, 255, 128]
    keep = [0, 2, 3, 4, 5]  # cycle 2 without its lane 0
    with pytest.raises(ValueError, match="not all in this tensor"):
        _reference().tensor_bits(x[keep], tags[keep])


def _weights(step) -> dict[str, np.ndarray]:
    shapes = {n: w.shape for n, w in step.weights.items()}
    return read_weights(step.machine, step.prog, step.graph, shapes)


def test_tiny_executor_matches_reference_and_differs_from_lfsr(tiny):
    modes = Modes(True, True, True)
    step = prepare_model(*tiny, "tiny", 3, config_for("sr", source="tensor_bits"), seed=1)
    res = verify_step(step, modes)
    assert res["ok"], res["layers"]
    assert res["source"] == "tensor_bits"
    assert all(la["changed_codes"] > 0 for la in res["layers"])
    lfsr = prepare_model(*tiny, "tiny", 3, config_for("sr", source="lfsr"), seed=1)
    assert verify_step(lfsr, modes)["ok"]
    a, b = _weights(step), _weights(lfsr)
    assert sum(int(np.count_nonzero(a[n] != b[n])) for n in a) > 0


def test_reference_catches_a_wrong_neighbour(tiny, monkeypatch):
    """An executor whose lanes round with their own bits instead of the neighbour's fails."""
    monkeypatch.setattr(
        sru_mod, "neighbour_lane_words", lambda x, fmt, r, lanes: discarded_words(x, fmt, r)
    )
    step = prepare_model(*tiny, "tiny", 2, config_for("sr", source="tensor_bits"), seed=1)
    assert not verify_step(step)["ok"]


def test_unknown_source_is_refused():
    with pytest.raises(VerifyError, match="unknown random source 'dice'"):
        config_for("sr", source="dice")
