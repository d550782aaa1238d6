"""Evidence run: the sparse FP8 recipe vs the float32 dense baseline of the same model, data,
epochs and seed; writes a JSON report and the sparse run's trace.

    python -m workloads.evidence --model vgg7 --epochs 20 --out-dir out/evidence

Kept out of the default test run (minutes of CPU); `make`-able as a one-liner.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workloads.recipe.config import RecipeConfig, load_config
from workloads.recipe.train import train
from workloads.recipes import recipe_path
from workloads.trace.format import save_trace
from workloads.trace.record import trace_from_training
from workloads.trace.summary import measured


def run(
    model: str,
    data: str,
    epochs: int,
    seed: int,
    config: Path,
    out_dir: Path,
    trace_out: Path | None,
    progress: bool,
) -> dict:
    sparse_cfg = load_config(config, epochs=epochs, seed=seed)
    # Same schedule, batch and optimiser hyper-parameters; no FP8, no sparsity, fp32 updates.
    dense_cfg = RecipeConfig.dense_fp32(
        epochs=epochs,
        seed=seed,
        batch_size=sparse_cfg.batch_size,
        loss=sparse_cfg.loss,
        threads=sparse_cfg.threads,
        update={
            "lr": sparse_cfg.update.lr,
            "momentum": sparse_cfg.update.momentum,
            "schedule": sparse_cfg.update.schedule,
        },
    )
    print(f"== dense float32 baseline: {model} on {data}, {epochs} epochs, seed {seed}")
    dense = train(model, data, dense_cfg, progress=progress)
    print(f"== sparse FP8 recipe ({config.name})")
    sparse = train(model, data, sparse_cfg, progress=progress)
    cmd = (
        f"python -m workloads.evidence --model {model} --data {data} --epochs {epochs} "
        f"--seed {seed} --config {config.name}"
    )
    t = trace_from_training(sparse, cmd)
    m = measured(t)
    last = sparse.history[-1]
    report = {
        "model": model,
        "data": data,
        "epochs": epochs,
        "seed": seed,
        "dense_fp32_accuracy": dense.test_accuracy,
        "sparse_fp8_accuracy": sparse.test_accuracy,
        "accuracy_gap_points": 100 * (dense.test_accuracy - sparse.test_accuracy),
        "last_epoch": {
            "gate_density": last.gate_density,
            "weight_group_density": last.weight_group_density,
            "grad_skip_fraction": last.grad_skip_fraction,
            "flops_reduction": last.flops_reduction,
        },
        "captured_iterations": m,
        "dense_history": [vars(h) for h in dense.history],
        "sparse_history": [vars(h) for h in sparse.history],
        "sparse_recipe": sparse_cfg.to_dict(),
        "command": cmd,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"evidence_{model}_{data}.json").write_text(json.dumps(report, indent=2))
    if trace_out is not None:
        save_trace(t, trace_out)
    print(
        json.dumps(
            {k: v for k, v in report.items() if not k.endswith(("history", "recipe"))}, indent=2
        )
    )
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vgg7")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, default=recipe_path("digits_sparse_fp8"))
    ap.add_argument("--out-dir", type=Path, default=Path("out/evidence"))
    ap.add_argument("--trace", type=Path, default=None, help="also write the sparse run's trace")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    run(a.model, a.data, a.epochs, a.seed, a.config, a.out_dir, a.trace, not a.quiet)


if __name__ == "__main__":
    main()
