from pathlib import Path

import pytest

from simulator.dse.config import SourceChoice, SruPoint, TrainingBudget, load_sweep_config
from simulator.dse.training import evaluate_training, recipe_overrides, unsupported_reason
from workloads.recipe.config import load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "simulator/dse/examples/sru_digits.yaml"


def _point(**kw):
    base = dict(
        format="e5m2_chip",
        rounding="sr",
        r=8,
        source=SourceChoice(kind="lfsr", width=3, combine="alternate"),
        apply_to=("weights", "momentum"),
    )
    base.update(kw)
    return SruPoint(**base)


def test_point_maps_onto_a_valid_recipe():
    cfg = load_config(recipe_overrides(_point(), TrainingBudget(), seed=4))
    assert cfg.seed == 4
    assert cfg.update.weight_format == cfg.update.momentum_format == "e5m2_chip"
    assert (cfg.update.rounding, cfg.update.random_bits) == ("sr", 8)
    assert (cfg.update.source.kind, cfg.update.source.width) == ("lfsr", 3)
    assert cfg.update.source.combine == "alternate"
    assert not (cfg.gating.enabled or cfg.lasso.enabled or cfg.skip.enabled)
    only_w = load_config(recipe_overrides(_point(apply_to=("weights",)), TrainingBudget(), 0))
    assert only_w.update.momentum_format == "fp16_chip"


def test_activation_and_error_srus_map_onto_the_quantisers():
    point = _point(apply_to=("activations", "errors"), r=5, rounding="sr_half")
    assert unsupported_reason(point) is None
    cfg = load_config(recipe_overrides(point, TrainingBudget(), 0))
    q = cfg.quant
    assert (q.activation_rounding, q.error_rounding, q.random_bits) == ("sr_half", "sr_half", 5)
    assert (q.activation_format, q.error_format) == ("e5m2_chip", "e5m2_chip")
    assert (q.source.kind, q.source.width, q.source.combine) == ("lfsr", 3, "alternate")
    assert q.weight_rounding is None  # the weight path keeps the recipe's default
    default = load_config({})
    assert cfg.update.rounding == default.update.rounding  # the update step is untouched
    assert cfg.update.weight_format == default.update.weight_format
    only_errors = load_config(recipe_overrides(_point(apply_to=("errors",)), TrainingBudget(), 0))
    assert only_errors.quant.activation_rounding is None
    assert only_errors.quant.error_rounding == "sr"


def test_what_the_recipe_cannot_train_is_said_not_guessed():
    acts = _point(source=SourceChoice(kind="network", tensor="activations"))
    assert "activations" in unsupported_reason(acts)
    assert evaluate_training(acts, TrainingBudget())["accuracy_mean"] is None
    assert unsupported_reason(_point()) is None
    own = _point(source=SourceChoice(kind="network", tensor="self", offset=3))
    assert unsupported_reason(own) is None
    cfg = load_config(recipe_overrides(own, TrainingBudget(), 0))
    assert (cfg.update.source.kind, cfg.update.source.offset) == ("network", 3)


def test_a_tiny_training_run_reports_accuracy_per_seed():
    budget = TrainingBudget(epochs=1, seeds=[0, 1], max_steps_per_epoch=2, batch=32)
    res = evaluate_training(_point(rounding="rne", r=None, source=None), budget)
    assert len(res["accuracy_per_seed"]) == 2 and 0.0 <= res["accuracy_mean"] <= 1.0
    assert res["accuracy_min"] <= res["accuracy_mean"] <= res["accuracy_max"]
    assert len(res["accuracy_curves"][0]) == 1


def test_the_shipped_example_covers_what_the_study_needs():
    cfg = load_sweep_config(EXAMPLE)
    labels = {p.label for p in cfg.points()}
    assert {f"sr r={r} lfsr24->e5m2_chip" for r in range(1, 25)} <= labels
    assert "sr r=8 lfsr3-alternate->e5m2_chip" in labels  # the published low-bit pair
    assert {"sr r=8 xorshift32->e5m2_chip", "sr r=8 net-self->e5m2_chip"} <= labels
    assert "rne->e5m2_chip" in labels
    assert cfg.training.enabled and len(cfg.training.seeds) >= 3


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"seeds": []}, {"lr": 0}])
def test_training_budget_is_validated(bad):
    with pytest.raises(ValueError):
        TrainingBudget(**bad)
