import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    # The test machine has 2 cores shared by 2 xdist workers.
    torch.set_num_threads(1)
