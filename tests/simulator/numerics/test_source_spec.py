"""`SourceSpec.build` of a tensor source reads the user's .npy file, and nothing else."""

import numpy as np
import pytest

from simulator.numerics.random_sources import TensorBitsSource
from simulator.numerics.source_spec import SourceSpec


def test_tensor_stream_from_a_npy_file(tmp_path):
    p = tmp_path / "acts.npy"
    np.save(p, np.linspace(-1, 1, 64, dtype=np.float32))
    assert isinstance(SourceSpec(kind="tensor", stream=p).build(), TensorBitsSource)


def test_a_file_that_is_not_npy_is_refused_plainly(tmp_path):
    p = tmp_path / "acts.npy"
    p.write_text("0.1 0.2 0.3\n")
    with pytest.raises(ValueError, match=r"acts\.npy: not a \.npy file") as err:
        SourceSpec(kind="tensor", stream=p).build()
    assert "pickle" not in str(err.value)  # not numpy's hint to load it unsafely


def test_a_missing_stream_names_the_file(tmp_path):
    p = tmp_path / "gone.npy"
    with pytest.raises(ValueError, match=r"cannot read tensor stream .*gone\.npy"):
        SourceSpec(kind="tensor", stream=p).build()
