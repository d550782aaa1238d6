"""Wall-clock timing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(fn: Callable[[], object], repeats: int, warmup: bool = False) -> float:
    """The fastest of `repeats` timed calls (after one untimed call when `warmup`)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def torch_step_seconds(model_name: str, batch: int, repeats: int = 3) -> float:
    """PyTorch's float32 training step (forward, MSE against one-hot targets, backward, SGD
    with momentum) of a `workloads.models` network on 32x32 inputs: the yardstick the
    simulator's speed targets are stated against. The fastest of `repeats` after a warm-up."""
    import torch

    from workloads.models import build

    torch.manual_seed(0)
    model = build(model_name)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32)
    target = torch.nn.functional.one_hot(torch.randint(0, 10, (batch,)), 10).float()

    def step() -> None:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()

    return best_seconds(step, repeats, warmup=True)
