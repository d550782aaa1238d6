from pathlib import Path

import pytest

from simulator.dse.config import SweepConfig, SweepConfigError, load_sweep_config


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def test_grid_expands_dedupes_and_collapses_deterministic_modes(tmp_path):
    cfg = load_sweep_config(
        _write(
            tmp_path,
            """
name: t
training: {enabled: false}
grid:
  - rounding: [sr, rne]
    r: [2, 4]
    source: [{kind: lfsr, width: 8}, {kind: uniform}]
  - rounding: [sr]
    r: [2]
    source: [{kind: uniform}]
""",
        )
    )
    points = cfg.points()
    labels = [p.label for p in points]
    # 2 r x 2 sources for sr, one rne point (r and source do not apply), duplicate dropped
    assert len(points) == 5 and labels.count("rne->e5m2_chip") == 1
    assert len({p.key(cfg) for p in points}) == 5


def test_keys_change_with_what_determines_results():
    base = {"name": "t", "grid": [{"r": [3]}], "training": {"enabled": False}}
    a = SweepConfig.model_validate(base)
    b = SweepConfig.model_validate({**base, "numeric_samples": 5000})
    c = SweepConfig.model_validate({**base, "name": "other"})
    ka, kb, kc = (cfg.points()[0].key(cfg) for cfg in (a, b, c))
    assert ka != kb and ka == kc  # the sweep's name does not change a point's results


def test_sampling_is_reproducible():
    cfg = SweepConfig.model_validate(
        {"name": "t", "grid": [{"r": list(range(1, 25))}], "sample": {"n": 5, "seed": 3}}
    )
    assert [p.r for p in cfg.points()] == [p.r for p in cfg.points()]
    assert len(cfg.points()) == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: t\ngrid: [{format: [e9m9]}]", "grid.0.format: unknown format 'e9m9'"),
        ("name: t\ngrid: [{r: [0]}]", "grid.0.r: r=0 must be in 1..32"),
        ("name: t\ngrid: [{source: [{kind: lfsr}]}]", "an lfsr needs width"),
        ("name: t\ngrid: [{source: [{kind: network}]}]", "needs `tensor`"),
        ("name: t\ngrid: [{rounding: [round]}]", "unknown rounding 'round'"),
        ("name: t\ngrid: []", "grid: List should have at least 1 item"),
        ("name: t\ngrid: [{}]\ncolour: red", "colour: Extra inputs are not permitted"),
        ("name: t\ngrid: [{}]\napply_to: [biases]", "apply_to.0"),
        ("- a list", "expected a mapping"),
        ("name: [unclosed", "not valid YAML"),
    ],
)
def test_bad_sweep_files_name_file_and_field(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(SweepConfigError, match=message) as info:
        load_sweep_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(SweepConfigError, match="cannot read"):
        load_sweep_config(tmp_path / "nope.yaml")


def test_a_block_can_place_its_srus_elsewhere(tmp_path):
    """Per-block apply_to: same design on other tensors is a distinct point with its own label;
    blocks without it keep the sweep's placement (and their keys)."""
    text = """
name: t
training: {enabled: false}
grid:
  - rounding: [sr]
    r: [8]
    source: [{kind: lfsr, width: 8}]
  - rounding: [sr]
    r: [8]
    source: [{kind: lfsr, width: 8}]
    apply_to: [activations, errors]
"""
    cfg = load_sweep_config(_write(tmp_path, text))
    default, moved = cfg.points()
    assert default.apply_to == ("weights", "momentum")
    assert moved.apply_to == ("activations", "errors")
    assert default.key(cfg) != moved.key(cfg)
    assert default.label == "sr r=8 lfsr8->e5m2_chip"
    assert moved.label == "sr r=8 lfsr8->e5m2_chip on activations+errors"
    first_block_only = text.split("  - rounding: [sr]")
    alone = load_sweep_config(_write(tmp_path, "  - rounding: [sr]".join(first_block_only[:2])))
    assert alone.points()[0].key(alone) == default.key(cfg)
