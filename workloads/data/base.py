"""The in-memory data set type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """A data set that cannot be loaded (missing, truncated or malformed files, bad arguments)."""


@dataclass(frozen=True)
class Dataset:
    """Images (N, C, H, W) float32 in [0, 1] and integer labels (N,) in [0, num_classes)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.float32:
            raise DataError(f"{self.name}: images must be float32 (N, C, H, W)")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{self.name}: {self.labels.shape[0]} labels for {len(self)} images")
        if self.labels.size and not 0 <= self.labels.min() <= self.labels.max() < self.num_classes:
            raise DataError(f"{self.name}: labels outside [0, {self.num_classes})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def subset(self, idx: np.ndarray, name: str | None = None) -> Dataset:
        return Dataset(name or self.name, self.images[idx], self.labels[idx], self.num_classes)


def fit_to_shape(images: np.ndarray, shape: tuple[int, int, int], upscale: bool) -> np.ndarray:
    """Bring (N, c, h, w) images to (N, C, H, W).

    Channels: a single channel is repeated to C; otherwise c must equal C. Space: with `upscale`,
    the largest integer nearest-neighbour factor that fits is applied first; what remains is
    zero-padded evenly (centred). Images larger than the target are an error.
    """
    n, c, h, w = images.shape
    tc, th, tw = shape
    if c != tc:
        if c != 1:
            raise DataError(f"cannot map {c} channels onto {tc}")
        images = np.repeat(images, tc, axis=1)
    if upscale:
        f = max(1, min(th // h, tw // w))
        if f > 1:
            images = images.repeat(f, axis=2).repeat(f, axis=3)
            h, w = h * f, w * f
    if h > th or w > tw:
        raise DataError(f"images of {h}x{w} do not fit into {th}x{tw}")
    top, left = (th - h) // 2, (tw - w) // 2
    out = np.zeros((n, tc, th, tw), dtype=np.float32)
    out[:, :, top : top + h, left : left + w] = images
    return out


def split(ds: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded random train/test split."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction={test_fraction} must be in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(ds))
    n_test = max(1, round(len(ds) * test_fraction))
    return (
        ds.subset(order[n_test:], f"{ds.name}-train"),
        ds.subset(order[:n_test], f"{ds.name}-test"),
    )
