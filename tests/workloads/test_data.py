"""Data loaders: digits fitting, the procedural set, and the CIFAR-10 binary reader."""

from __future__ import annotations

import numpy as np
import pytest

from workloads import data
from workloads.data import DataError


def test_digits_upscaled_and_replicated():
    ds = data.load_digits((3, 32, 32))
    assert ds.images.shape == (1797, 3, 32, 32) and ds.num_classes == 10
    assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
    # x4 nearest-neighbour: every 4x4 block is constant, and the channels are equal.
    im = ds.images[5, 0]
    assert np.array_equal(im, np.kron(im[::4, ::4], np.ones((4, 4), np.float32)))
    assert np.array_equal(ds.images[:, 0], ds.images[:, 2])


def test_digits_padded_without_upscale():
    ds = data.load_digits((1, 12, 12), upscale=False)
    assert ds.images.shape == (1797, 1, 12, 12)
    assert not ds.images[:, :, :2, :].any() and not ds.images[:, :, :, -2:].any()


def test_split_is_seeded_and_disjoint():
    a_train, a_test = data.load("digits", (1, 8, 8), seed=3)
    _, b_test = data.load("digits", (1, 8, 8), seed=3)
    assert np.array_equal(a_test.images, b_test.images)
    assert len(a_train) + len(a_test) == 1797
    _, c_test = data.load("digits", (1, 8, 8), seed=4)
    assert not np.array_equal(a_test.labels, c_test.labels)


def test_shapes_dataset():
    ds = data.make_shapes(n=50, shape=(3, 16, 16), seed=1)
    assert ds.images.shape == (50, 3, 16, 16) and set(np.unique(ds.labels)) <= set(range(10))
    assert np.array_equal(ds.images, data.make_shapes(n=50, shape=(3, 16, 16), seed=1).images)
    with pytest.raises(DataError, match="num_classes"):
        data.make_shapes(n=5, num_classes=1)


def _write_cifar(path, labels, rng):
    recs = np.empty((len(labels), 3073), np.uint8)
    recs[:, 0] = labels
    recs[:, 1:] = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    recs.tofile(path)
    return recs


def test_cifar_binary_reader(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    recs = [_write_cifar(d / f"data_batch_{i}.bin", [i, 9, 0], rng) for i in range(1, 6)]
    test_recs = _write_cifar(d / "test_batch.bin", [7, 3], rng)
    train = data.load_cifar10(tmp_path, "train")
    assert len(train) == 15 and train.labels[:3].tolist() == [1, 9, 0]
    # Channel-major layout: pixel bytes 0..1023 are red (channel 0), row-major.
    assert train.images[0, 0, 0, 1] == pytest.approx(recs[0][0, 2] / 255.0)
    assert train.images[0, 1, 0, 0] == pytest.approx(recs[0][0, 1 + 1024] / 255.0)
    assert train.images[0, 2, 31, 31] == pytest.approx(recs[0][0, 3072] / 255.0)
    test = data.load_cifar10(d, "test")
    assert test.labels.tolist() == [7, 3]
    assert test.images[1, 0, 1, 0] == pytest.approx(test_recs[1, 1 + 32] / 255.0)
    tr, te = data.load("cifar10", (3, 32, 32), root=tmp_path)
    assert len(tr) == 15 and len(te) == 2


def test_cifar_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.read_cifar_file(tmp_path / "nope.bin")
    with pytest.raises(DataError, match=r"missing.*data_batch_1\.bin"):
        data.load_cifar10(tmp_path, "train")
    bad = tmp_path / "test_batch.bin"
    rng = np.random.default_rng(1)
    _write_cifar(bad, [1, 2], rng)
    with open(bad, "ab") as f:
        f.write(b"\x00" * 10)
    with pytest.raises(DataError, match=r"truncated.*2 whole records \+ 10 bytes"):
        data.load_cifar10(tmp_path, "test")
    _write_cifar(bad, [1, 12], rng)
    with pytest.raises(DataError, match="record 1 has label 12"):
        data.read_cifar_file(bad)
    with pytest.raises(DataError, match="needs the directory"):
        data.load("cifar10", (3, 32, 32))
    with pytest.raises(DataError, match="unknown data set 'mnist'"):
        data.load("mnist", (3, 32, 32))
