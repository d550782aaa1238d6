"""CIFAR-10 in its *binary* distribution (never the pickled one: unpickling runs code).

Each record is 1 label byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row
major, 32x32). The files are `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`,
usually inside a `cifar-10-batches-bin` directory. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workloads.data.base import DataError, Dataset

RECORD_BYTES = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)


def read_cifar_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels uint8 (N,)) of one binary batch file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CIFAR-10 file not found: {path}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise DataError(f"CIFAR-10 file is empty: {path}")
    if raw.size % RECORD_BYTES:
        raise DataError(
            f"CIFAR-10 file {path} is truncated or not in the binary format: {raw.size} bytes "
            f"is not a multiple of the {RECORD_BYTES}-byte record "
            f"({raw.size // RECORD_BYTES} whole records + {raw.size % RECORD_BYTES} bytes)"
        )
    recs = raw.reshape(-1, RECORD_BYTES)
    labels = recs[:, 0]
    if labels.max() > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise DataError(f"CIFAR-10 file {path}: record {bad} has label {labels[bad]} (not 0..9)")
    return recs[:, 1:].reshape(-1, 3, 32, 32), labels


def _resolve_dir(root: Path) -> Path:
    root = Path(root)
    if (root / "cifar-10-batches-bin").is_dir():
        return root / "cifar-10-batches-bin"
    return root


def load_cifar10(root: str | Path, split: str = "train", limit: int | None = None) -> Dataset:
    """CIFAR-10 from `root` (the `cifar-10-batches-bin` directory or its parent).

    `split` is "train" (the five data batches) or "test"; `limit` keeps the first images only.
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    d = _resolve_dir(Path(root))
    if not d.is_dir():
        raise DataError(f"CIFAR-10 directory not found: {root}")
    names = TRAIN_FILES if split == "train" else TEST_FILES
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 binary files missing under {d}: {', '.join(missing)} (expected the "
            "binary version, cifar-10-binary.tar.gz, unpacked; it is never downloaded)"
        )
    parts = [read_cifar_file(d / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return Dataset(
        f"cifar10-{split}", images.astype(np.float32) / 255.0, labels.astype(np.int64), 10
    )
