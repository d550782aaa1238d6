"""The training loop: FP8 forward/backward, gating, group-Lasso, gradient skipping, rounded SGD;
progress bar, per-epoch accuracy and sparsity, and capture of what a trace records."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np
import torch
from tqdm import tqdm

from workloads import models
from workloads.data import Dataset
from workloads.data import load as load_data
from workloads.graph import LayerGraph, extract_graph
from workloads.recipe import lasso
from workloads.recipe.config import RecipeConfig
from workloads.recipe.gating import gating_penalty
from workloads.recipe.objectives import per_image_loss, skip_decisions
from workloads.recipe.optimizer import RoundedSGD
from workloads.recipe.prepare import gated_layers, mac_modules, prepare_model
from workloads.trace.accounting import GateInfo, step_macs

DATA_CHANNELS = {"digits": 1, "shapes": 3, "cifar10": 3}


@dataclass
class CapturedIteration:
    """What one training step did, as the hardware sees it (masks: True = work issued)."""

    step: int
    epoch: int
    gates: dict[str, np.ndarray]  # layer -> (N, n_gate_groups, H, W) bool
    wgroups: dict[str, np.ndarray]  # layer -> (C_out, n_in_groups) bool, True = nonzero
    skip: np.ndarray  # (N,) bool, True = the image skipped BP and WU
    labels: np.ndarray


@dataclass
class CapturedTensors:
    """One iteration's rounded tensors (float32 values exactly representable in their formats)."""

    step: int
    inputs: np.ndarray
    targets: np.ndarray
    weights: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    gate_density: float
    weight_group_density: float
    grad_skip_fraction: float
    flops_reduction: float
    seconds: float

    def line(self) -> str:
        return (
            f"epoch {self.epoch}: loss {self.train_loss:.4f} train acc {self.train_accuracy:.4f} "
            f"test acc {self.test_accuracy:.4f} | gate density {self.gate_density:.3f} "
            f"weight-group density {self.weight_group_density:.3f} "
            f"grad skip {self.grad_skip_fraction:.3f} | FLOPs reduction "
            f"{self.flops_reduction:.2f}x | {self.seconds:.1f} s"
        )


@dataclass
class TrainResult:
    model_name: str
    data_name: str
    config: RecipeConfig
    graph: LayerGraph
    gate_info: dict[str, GateInfo]
    history: list[EpochStats] = field(default_factory=list)
    captured: list[CapturedIteration] = field(default_factory=list)
    tensors: CapturedTensors | None = None
    steps: int = 0

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy if self.history else float("nan")


@torch.no_grad()
def evaluate(model: torch.nn.Module, ds: Dataset, batch: int = 256) -> float:
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(ds), batch):
        x = torch.from_numpy(ds.images[i : i + batch])
        y = torch.from_numpy(ds.labels[i : i + batch])
        correct += int((model(x).argmax(1) == y).sum())
    model.train(was)
    return correct / max(1, len(ds))


def train(
    model_name: str,
    data_name: str,
    cfg: RecipeConfig,
    data_root: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train `model_name` on `data_name` with the recipe `cfg`; reproducible from `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    # numba's parallel quantizer with its default thread count competes with torch's threads
    # for the same cores: measured 2.7x slower steps on a 2-core machine than with this cap.
    numba.set_num_threads(min(cfg.threads, numba.config.NUMBA_NUM_THREADS))
    channels = DATA_CHANNELS.get(data_name, 3)
    shape = models.default_input_shape(model_name, channels)
    train_ds, test_ds = load_data(
        data_name, shape, cfg.seed, cfg.test_fraction, root=data_root, limit=limit
    )
    model = models.build(model_name, train_ds.num_classes, channels)
    graph = extract_graph(model, shape, model_name)
    prepare_model(model, cfg)
    model.train()
    gated = gated_layers(model)
    gate_info = {n: GateInfo(m.base_channels, m.channel_group) for n, m in gated.items()}
    for m in gated.values():
        m.controller_gain = cfg.gating.controller_gain
    macs_mods = mac_modules(model)
    opt = RoundedSGD(model.parameters(), cfg.update, cfg.seed)
    result = TrainResult(model_name, data_name, cfg, graph, gate_info)

    n = len(train_ds)
    per_epoch = -(-n // cfg.batch_size)
    total = min(cfg.steps, cfg.epochs * per_epoch) if cfg.steps else cfg.epochs * per_epoch
    epochs = -(-total // per_epoch)

    # Capture the last full batches (a trace has one batch size; an epoch's short final batch
    # would otherwise be what the trace holds).
    def full(s: int) -> bool:
        return (s % per_epoch + 1) * cfg.batch_size <= n

    capture_steps = [s for s in range(total) if full(s)][-cfg.capture.iterations :]
    if not capture_steps:  # the data set is smaller than one batch
        capture_steps = list(range(total))[-cfg.capture.iterations :]
    record_step = capture_steps[-1]
    rng = np.random.default_rng(cfg.seed)
    group_in = cfg.lasso.group_in
    step = 0
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        order = rng.permutation(n)
        sums = {"loss": 0.0, "correct": 0, "seen": 0, "skip": 0, "gate_on": 0, "gate_all": 0}
        dense_macs = sparse_macs = 0
        bar = tqdm(
            range(per_epoch), desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False
        )
        for b in bar:
            if step >= total:
                break
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = torch.from_numpy(train_ds.images[idx])
            y = torch.from_numpy(train_ds.labels[idx])
            record = cfg.capture.codes and step == record_step
            for m in macs_mods.values():
                m.recorder.on = record
            wmask = lasso.nonzero_group_masks(model, group_in) if cfg.lasso.enabled else {}
            logits = model(x)
            losses = per_image_loss(logits, y, cfg.loss)
            skipping = cfg.skip.enabled and epoch > cfg.skip.warmup_epochs
            skip = (
                skip_decisions(logits, y, cfg.skip.criterion, cfg.skip.threshold, cfg.loss)
                if skipping
                else torch.zeros(len(idx), dtype=torch.bool)
            )
            # Sum (not mean) over the batch keeps errors O(1) for FP8; SGD divides by N.
            objective = (losses * (~skip).to(losses.dtype)).sum()
            bs = len(idx)
            if cfg.gating.enabled and gated:
                objective = objective + bs * cfg.gating.reg_weight * gating_penalty(
                    model, _gate_target(cfg, epoch, b / per_epoch)
                )
            lam, lasso_target = _lasso_now(cfg, epoch, b / per_epoch)
            if lam and cfg.lasso.mode == "loss":
                objective = objective + bs * lam * lasso.lasso_penalty(
                    model, group_in, cfg.lasso.min_in_channels
                )
            opt.zero_grad()
            objective.backward()
            lr = opt.lr_at(step, total)
            opt.step(lr, grad_scale=1.0 / bs)
            if cfg.lasso.enabled:
                if lam and cfg.lasso.mode == "proximal":
                    lasso.proximal_step(model, group_in, lr * lam, cfg.lasso.min_in_channels)
                lasso.zero_small_groups(
                    model,
                    group_in,
                    cfg.lasso.zero_threshold,
                    opt.momentum if cfg.lasso.zero_momentum else None,
                    lasso_target,
                    cfg.lasso.min_in_channels,
                    cfg.lasso.rescale,
                )

            if cfg.gating.enabled and cfg.gating.control == "controller":
                _steer_thresholds(gated, _gate_target(cfg, epoch, b / per_epoch))
            gates = {name: m.last_gate.numpy() for name, m in gated.items()}
            wg = {k: v.numpy() for k, v in wmask.items()}
            skip_np = skip.numpy()
            macs = step_macs(graph, bs, gates, gate_info, wg, group_in, skip_np)
            dense_macs += macs.dense
            sparse_macs += macs.sparse
            sums["loss"] += float(losses.detach().sum())
            sums["correct"] += int((logits.argmax(1) == y).sum())
            sums["seen"] += bs
            sums["skip"] += int(skip.sum())
            sums["gate_on"] += sum(int(g.sum()) for g in gates.values())
            sums["gate_all"] += sum(g.size for g in gates.values())
            if step in capture_steps:
                result.captured.append(
                    CapturedIteration(step, epoch, gates, wg, skip_np, train_ds.labels[idx])
                )
            if record:
                result.tensors = _collect_tensors(step, macs_mods, x, y)
            bar.set_postfix(
                loss=f"{float(losses.detach().mean()):.3f}",
                skip=f"{float(skip.float().mean()):.2f}",
            )
            step += 1
        bar.close()
        wd = lasso.nonzero_group_masks(model, group_in) if cfg.lasso.enabled else {}
        n_groups = sum(v.numel() for v in wd.values())
        stats = EpochStats(
            epoch=epoch,
            train_loss=sums["loss"] / max(1, sums["seen"]),
            train_accuracy=sums["correct"] / max(1, sums["seen"]),
            test_accuracy=evaluate(model, test_ds),
            gate_density=sums["gate_on"] / sums["gate_all"] if sums["gate_all"] else 1.0,
            weight_group_density=(
                sum(int(v.sum()) for v in wd.values()) / n_groups if n_groups else 1.0
            ),
            grad_skip_fraction=sums["skip"] / max(1, sums["seen"]),
            flops_reduction=dense_macs / sparse_macs if sparse_macs else float("nan"),
            seconds=time.time() - t0,
        )
        result.history.append(stats)
        log(stats.line())
    result.steps = step
    result.model = model  # type: ignore[attr-defined]
    return result


def _gate_target(cfg: RecipeConfig, epoch: int, frac: float) -> float:
    """Target gate density now: 1 at the start, falling linearly to the target over the ramp
    (sparsifying a net that has not learned anything yet costs accuracy for nothing)."""
    g = cfg.gating
    if g.ramp_epochs == 0:
        return g.target_density
    progress = min(1.0, (epoch - 1 + frac) / g.ramp_epochs)
    return 1.0 - (1.0 - g.target_density) * progress


def _lasso_now(cfg: RecipeConfig, epoch: int, frac: float) -> tuple[float, float]:
    """(lambda, target zero fraction) now: both 0 through `start_epoch`, then rising linearly
    over `ramp_epochs` to `reg_weight` and `target_zero_fraction` (0 if None)."""
    c = cfg.lasso
    if not c.enabled:
        return 0.0, 0.0
    t = epoch - 1 + frac - c.start_epoch
    if t < 0:
        return 0.0, 0.0
    ramp = min(1.0, t / c.ramp_epochs) if c.ramp_epochs else 1.0
    return c.reg_weight * ramp, (c.target_zero_fraction or 0.0) * ramp


@torch.no_grad()
def _steer_thresholds(gated: dict, target: float) -> None:
    """Proportional control of each layer's thresholds towards the target hard density; the
    straight-through gradient still shapes the thresholds of the groups relative to each other."""
    for m in gated.values():
        m.threshold.add_(m.controller_gain * (float(m.last_gate.float().mean()) - target))


def _collect_tensors(step, mods, x, y) -> CapturedTensors:
    first = next(iter(mods.values()))
    # The first MAC layer's recorded operand is the input batch as rounded for the chip.
    inputs = first.recorder.x.numpy().copy() if first.recorder.x is not None else x.numpy()
    weights, errors = {}, {}
    for name, m in mods.items():
        r = m.recorder
        if r.w is not None:
            weights[name] = r.w.numpy().copy()
        if r.error is not None:
            errors[name] = r.error.numpy().copy()
        r.on = False
        r.x = r.w = r.error = None
    return CapturedTensors(step, inputs, y.numpy().copy(), weights, errors)
