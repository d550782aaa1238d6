"""scikit-learn's 8x8 handwritten digits (1797 images; ships with sklearn, nothing downloaded)."""

from __future__ import annotations

import numpy as np

from workloads.data.base import Dataset, fit_to_shape


def load_digits(shape: tuple[int, int, int] = (1, 32, 32), upscale: bool = True) -> Dataset:
    """Digits scaled to [0, 1] and fitted to `shape` (C, H, W).

    With `upscale` (default) each 8x8 image is enlarged by nearest neighbour (x4 for 32x32) so
    it fills the input; otherwise it is zero-padded in the centre.
    """
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    images = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    return Dataset("digits", fit_to_shape(images, shape, upscale), d.target.astype(np.int64), 10)
