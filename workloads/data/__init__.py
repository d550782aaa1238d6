"""Data sets for training: sklearn digits, a procedural set and CIFAR-10 (binary, from disk).

`load(name, shape, seed, ...)` returns (train, test) `Dataset`s fitted to a model's input shape.
Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from workloads.data.base import DataError, Dataset, fit_to_shape, split
from workloads.data.cifar import load_cifar10, read_cifar_file
from workloads.data.digits import load_digits
from workloads.data.synthetic import make_shapes

DATA_NAMES: Final = ("digits", "shapes", "cifar10")


def load(
    name: str,
    shape: tuple[int, int, int],
    seed: int = 0,
    test_fraction: float = 0.2,
    root: str | Path | None = None,
    limit: int | None = None,
) -> tuple[Dataset, Dataset]:
    """(train, test) of a named data set fitted to `shape` (C, H, W).

    digits and shapes are split with `test_fraction` (seeded); cifar10 uses its own test batch
    and needs `root` (the directory holding the binary batches). `limit` caps each part's size.
    """
    if name == "digits":
        train, test = split(load_digits(shape), test_fraction, seed)
    elif name == "shapes":
        train, test = split(make_shapes(shape=shape, seed=seed), test_fraction, seed)
    elif name == "cifar10":
        if root is None:
            raise DataError("cifar10 needs the directory of its binary files (root / --data-dir)")
        train = load_cifar10(root, "train", limit)
        test = load_cifar10(root, "test", limit)
        if train.image_shape != tuple(shape):
            train = Dataset(train.name, fit_to_shape(train.images, shape, False), train.labels, 10)
            test = Dataset(test.name, fit_to_shape(test.images, shape, False), test.labels, 10)
    else:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(DATA_NAMES)}")
    if limit is not None:
        train = train.subset(slice(0, limit))
        test = test.subset(slice(0, limit))
    return train, test


__all__ = [
    "DATA_NAMES",
    "DataError",
    "Dataset",
    "fit_to_shape",
    "load",
    "load_cifar10",
    "load_digits",
    "make_shapes",
    "read_cifar_file",
    "split",
]
