"""Tensor-core tiles on several numba threads (`tree.tile_threads`, `--threads`): a number or
`auto` (while a core is idle), the same results, bad values refused with a message naming
them."""

import numba
import numpy as np
import pytest

from simulator.functional import tree
from simulator.functional.compare import config_for, execute, prepare_model

two = pytest.mark.skipif(tree.max_threads() < 2, reason="numba has one thread here")


def _tile(seed: int):
    rng = np.random.default_rng(seed)
    A = rng.integers(0, 256, (96, 6, 8), dtype=np.uint8)
    B = rng.integers(0, 256, (32, 6, 8), dtype=np.uint8)
    return A, B


class _Idle:
    def __init__(self, n: int):
        self.answer, self.asked = n, []

    def threads(self, most: int) -> int:
        self.asked.append(most)
        return min(self.answer, most)


@pytest.mark.parametrize("idle_threads", [1, 2])
def test_auto_uses_the_threads_idle_cores_allow(monkeypatch, idle_threads):
    idle = _Idle(idle_threads)
    monkeypatch.setattr(tree, "_idle", idle)
    monkeypatch.delenv("FP8SIM_THREADS", raising=False)
    with tree.tile_threads(None):  # the default is auto
        assert tree._tiles["threads"] == "auto"
        n = tree._threads_for(1 << 20)
        assert tree._threads_for(100) is None  # small tiles never ask
    most = tree.max_threads()
    assert n == (min(idle_threads, most) if min(idle_threads, most) > 1 else None)
    assert idle.asked == [most]


@pytest.mark.parametrize("text, value", [("auto", "auto"), (" AUTO ", "auto"), ("1", 1)])
def test_thread_settings_parse(monkeypatch, text, value):
    monkeypatch.setenv("FP8SIM_THREADS", text)
    with tree.tile_threads(None):
        assert tree._tiles["threads"] == value
    with tree.tile_threads(text):
        assert tree._tiles["threads"] == value


def test_threads_are_only_for_large_tiles():
    assert tree._threads_for(1 << 30) is None  # outside any setting: the caller's threads
    with tree.tile_threads(1):
        assert tree._threads_for(1 << 30) is None
    if tree.max_threads() >= 2:
        with tree.tile_threads(2):
            assert tree._threads_for(4096) == 2
            assert tree._threads_for(4095) is None  # small tiles stay on the caller's
        assert tree._threads_for(1 << 30) is None  # restored on leaving


@two
@pytest.mark.parametrize("fast", [True, False])
def test_numba_threads_come_back(fast):
    """A large tile leaves numba's threads at its count for the next one; a small tile and
    the end of the block give the caller's count back."""
    A, B = _tile(4)
    kw = dict(operand_format="e5m2_chip", accumulator_format="fp16_chip", align_bits=24)
    numba.set_num_threads(1)
    try:
        with tree.tile_threads(2):
            tree.tree_accumulate(A, B, np.zeros((96, 32)), fast=fast, **kw)
            assert numba.get_num_threads() == 2
            tree.tree_accumulate(A[:2, :1], B[:, :1], np.zeros((2, 32)), fast=fast, **kw)
            assert numba.get_num_threads() == 1  # a small tile: the caller's count
            tree.tree_accumulate(A, B, np.zeros((96, 32)), fast=fast, **kw)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(tree.max_threads())


@two
@pytest.mark.parametrize("fast", [True, False])
def test_a_tile_on_two_threads_is_bit_identical(fast):
    A, B = _tile(3)  # random codes: wide spans, so the integer rule runs on some steps too
    kw = dict(operand_format="e5m2_chip", accumulator_format="fp16_chip", align_bits=24)
    out = []
    for n in (1, 2):
        acc = np.zeros((A.shape[0], B.shape[0]))
        with tree.tile_threads(n):
            tree.tree_accumulate(A, B, acc, fast=fast, **kw)
        out.append(acc)
    assert np.any(out[0] != 0)
    assert np.array_equal(out[0].view(np.int64), out[1].view(np.int64))


@two
def test_a_step_on_two_threads_leaves_the_same_machine_state(tiny):
    states = []
    before = numba.get_num_threads()
    for n in (1, 2):
        step = execute(prepare_model(*tiny, "tiny", 2, config_for("rne")), threads=n)
        states.append(step.machine.dram.copy())
        assert numba.get_num_threads() == before  # the tiles' threads given back
    assert np.array_equal(states[0], states[1])


@pytest.mark.parametrize("n", [0, 10_000])
def test_bad_thread_counts_are_refused(n):
    with (
        pytest.raises(ValueError, match=f"threads must be between 1 and .*not {n}"),
        tree.tile_threads(n),
    ):
        pass


@pytest.mark.parametrize(
    "name, value",
    [
        ("FP8SIM_THREADS", "two"),
        ("FP8SIM_THREADS", "0"),
        ("FP8SIM_THREADS", "1.5"),
        ("FP8SIM_PARALLEL_MACS", "-1"),
    ],
)
def test_bad_environment_values_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name), tree.tile_threads(None):
        pass


def test_cli_threads_out_of_range_is_one_line():
    from click.testing import CliRunner

    from simulator.cli import main

    for bad in ("0", "two"):
        args = ["verify", "--model", "vgg7", "--batch", "1", "--threads", bad]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "Traceback" not in r.output and "--threads" in r.output
        assert bad in r.output


def test_cli_threads_takes_auto_and_counts():
    from simulator.cli.options import ThreadsType

    t = ThreadsType()
    assert t.convert("auto", None, None) == "auto"
    assert t.convert("1", None, None) == 1
