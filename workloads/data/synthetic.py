"""A procedurally generated image-classification set: oriented bars and blobs, seeded.

Class k draws a shape whose kind, orientation and position depend on k, plus noise, so a small
CNN can learn it in a few epochs; it exercises the pipeline at any input size without files.
"""

from __future__ import annotations

import numpy as np

from workloads.data.base import DataError, Dataset


def make_shapes(
    n: int = 2000,
    shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    noise: float = 0.15,
    seed: int = 0,
) -> Dataset:
    """`n` images of `shape`; class k is a bar at angle pi*k/num_classes (even k) or a ring of
    radius growing with k (odd k), at a random offset, with Gaussian noise and a random tint."""
    if n < 1 or num_classes < 2:
        raise DataError(f"need n >= 1 and num_classes >= 2 (got n={n}, num_classes={num_classes})")
    c, h, w = shape
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy = (yy - h / 2) / (h / 2)
    xx = (xx - w / 2) / (w / 2)
    images = np.empty((n, c, h, w), dtype=np.float32)
    for i, k in enumerate(labels):
        dy, dx = rng.uniform(-0.25, 0.25, size=2)
        y, x = yy - dy, xx - dx
        if k % 2 == 0:
            theta = np.pi * k / num_classes
            dist = np.abs(x * np.sin(theta) - y * np.cos(theta))
            img = np.exp(-((dist / 0.12) ** 2))
        else:
            radius = 0.2 + 0.6 * k / num_classes
            img = np.exp(-(((np.hypot(x, y) - radius) / 0.1) ** 2))
        tint = rng.uniform(0.6, 1.0, size=(c, 1, 1))
        images[i] = tint * img[None] + noise * rng.standard_normal((c, h, w))
    np.clip(images, 0.0, 1.0, out=images)
    return Dataset("shapes", images, labels.astype(np.int64), num_classes)
