"""The hardware configuration: ref28's defaults, metadata on every parameter, readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import (
    ConfigError,
    Provenance,
    config_hash,
    load_config,
    provenance,
    shipped_configs,
    validate_config,
)


@pytest.fixture(scope="module")
def ref28():
    return load_config("ref28")


def test_ref28_is_shipped_and_has_the_spec_defaults(ref28):
    assert "ref28" in shipped_configs()
    tc = ref28.tensor_core
    assert (tc.n_tc, tc.lanes, tc.dp_width) == (4, 16, 8)
    assert tc.macs_per_cycle == 512  # the spec's peak dense throughput
    assert tc.operand_format == "e5m2_chip" and tc.accumulator_format == "fp16_chip"
    assert ref28.buffers.activation.size_bytes == 256 * 1024
    assert ref28.buffers.weight.size_bytes == ref28.buffers.error.size_bytes == 128 * 1024
    assert ref28.dma.dram_bytes_per_cycle == 16
    assert ref28.cgu.base_fraction_denominator == 4 and ref28.cgu.group_size_channels == 16
    assert (ref28.wsu.group_out_channels, ref28.wsu.group_in_channels) == (1, 8)
    assert ref28.gsu.threshold == 0.9
    volts = [p.voltage_v for p in ref28.operating_points]
    mhz = [p.frequency_mhz for p in ref28.operating_points]
    assert min(volts) == 0.6 and max(volts) == 1.0
    assert min(mhz) == 100 and max(mhz) == 500
    assert ref28.operating_point().name == ref28.default_operating_point


def test_every_parameter_has_unit_and_provenance(ref28):
    params = provenance(ref28)
    assert len(params) > 60
    allowed = {p.value for p in Provenance}
    for p in params:
        assert p.unit, p.path
        assert p.provenance in allowed, p.path
        assert p.description, p.path
    # the spec's hints are marked hinted, our guesses assumed
    by_path = {p.path: p for p in params}
    assert by_path["tensor_core.dp_width"].provenance == "hinted"
    assert by_path["tensor_core.n_tc"].provenance == "assumed"
    assert by_path["operating_points[0].voltage_v"].unit == "V"


def test_lane_distribution_is_an_assumed_calibration_choice(ref28, tmp_path: Path):
    assert ref28.tensor_core.lane_distribution == "dynamic"
    info = {p.path: p for p in provenance(ref28)}["tensor_core.lane_distribution"]
    assert info.provenance == "assumed" and "calibration" in info.source
    assert "static" in info.description
    f = tmp_path / "static.yaml"
    f.write_text("extends: ref28\ntensor_core: {lane_distribution: static}\n")
    assert load_config(f).tensor_core.lane_distribution == "static"
    msg = _broken(ref28, lambda d: d["tensor_core"].update(lane_distribution="greedy"))
    assert "tensor_core.lane_distribution" in msg


def test_energy_fields_carry_pj_in_name_and_a_source(ref28):
    energy = [p for p in provenance(ref28) if p.path.startswith("energy.")]
    per_event = [p for p in energy if not p.path.startswith("energy.reference_")]
    assert len(per_event) >= 14
    for p in per_event:
        assert "pj" in p.path.split(".")[-1], p.path
        assert p.source, p.path
        assert p.provenance == "assumed"


def test_energy_scaling(ref28):
    e = ref28.energy
    assert e.dynamic_scale(e.reference_voltage_v) == 1.0
    assert e.dynamic_scale(0.45) == pytest.approx(0.25)
    leak = e.leakage_pj_per_cycle_at(e.reference_voltage_v / 2, e.reference_frequency_mhz * 2)
    assert leak == pytest.approx(e.leakage_pj_per_cycle / 4)
    small = ref28.buffers.mask  # 4 KiB banks
    big = ref28.buffers.activation  # 16 KiB banks
    assert e.sram_pj_per_byte(small, write=False) < e.sram_pj_per_byte(big, write=False)


def _broken(ref28, edit) -> str:
    data = ref28.model_dump(mode="json")
    edit(data)
    with pytest.raises(ConfigError) as err:
        validate_config(data, "hw.yaml")
    return str(err.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["buffers"]["activation"].update(size_bytes=1000),
            "hw.yaml: buffers.activation.size_bytes: must be a positive multiple of banks x "
            "word_bytes",
        ),
        (lambda d: d["tensor_core"].update(lanes=0), "tensor_core.lanes: Input should be greater"),
        (lambda d: d["tensor_core"].update(lanez=3), "tensor_core.lanez: unknown field"),
        (lambda d: d["dma"].pop("dram_bytes_per_cycle"), "dma.dram_bytes_per_cycle: required"),
        (lambda d: d["sru"].update(seed=1 << 20), "sru.seed: must be below 2**lfsr_width_bits"),
        (lambda d: d["tensor_core"].update(operand_format="e9m9"), "unknown number format"),
        (lambda d: d.update(default_operating_point="turbo"), "default_operating_point: must name"),
        (lambda d: d["wsu"].update(group_in_channels=3), "wsu.group_in_channels: must divide"),
        (lambda d: d["controller"].update(instruction_width_bits=100), "must be one of"),
        (lambda d: d["gsu"].update(threshold=1.5), "gsu.threshold"),
        (lambda d: d["dma"].update(dram_clock="bus"), "dma.dram_clock: Input should be"),
        (
            lambda d: d["dma"].update(dram_bytes_per_cycle=1),  # 0.8 B/cycle at 500 MHz
            "dma.dram_bytes_per_cycle: with dram_clock `memory` the channel moves less than one "
            "byte per cycle at operating point 'v1.0_f500'",
        ),
    ],
)
def test_wrong_configs_name_field_and_rule(ref28, edit, expected):
    msg = _broken(ref28, edit)
    assert expected in msg
    assert "pydantic" not in msg and "Traceback" not in msg


def test_extends_overrides_and_hash(tmp_path: Path, ref28):
    f = tmp_path / "small.yaml"
    f.write_text("extends: ref28\nname: small\nbuffers:\n  weight: {size_bytes: 65536}\n")
    small = load_config(f)
    assert small.buffers.weight.size_bytes == 65536
    assert small.buffers.weight.banks == ref28.buffers.weight.banks  # merged, not replaced
    assert config_hash(small) != config_hash(ref28)
    # the hash ignores key order and comments
    g = tmp_path / "copy.yaml"
    data = ref28.model_dump(mode="json")
    g.write_text("# a comment\n" + yaml.safe_dump(dict(reversed(list(data.items())))))
    assert config_hash(load_config(g)) == config_hash(ref28)
    assert len(config_hash(ref28)) == 64


def test_unreadable_configs(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such file, and not a shipped configuration"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntensor_core: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml \(line \d+, column \d+\): not valid YAML"):
        load_config(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="extends` cycle"):
        load_config(loop)
    seq = tmp_path / "seq.yaml"
    seq.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(seq)


BAD_VALUES = [None, "x", -1, 0, 1.5, [], {}, True]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_broken_value_gives_a_config_error_naming_its_field(data):
    ref = load_config("ref28")
    params = provenance(ref)
    p = data.draw(st.sampled_from(params))
    bad = data.draw(st.sampled_from(BAD_VALUES))
    raw = ref.model_dump(mode="json")
    # walk "a.b[2].c" to the leaf's parent
    node, key = raw, None
    parts = p.path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    key = parts[-1]
    node[key] = bad
    try:
        cfg = validate_config(raw, "hw.yaml")
    except ConfigError as err:
        msg = str(err)
        assert msg.startswith("hw.yaml: ") and "Traceback" not in msg
        # the message names the broken field (or, for cross-field rules, a field it involves)
        assert key in msg or p.path.split(".")[0] in msg
        return
    # some values are acceptable for some fields (e.g. 1.5 V, True for a bool)
    assert cfg is not None


def test_dram_channel_is_fixed_in_time_across_operating_points(ref28):
    # ref28: 16 B/cycle and 100 cycles at the default 400 MHz = 6.4 GB/s and 250 ns
    assert ref28.dma.dram_clock == "memory"
    assert ref28.dram_gb_per_s() == pytest.approx(6.4)
    at = {p.name: ref28.dram_at(p.name) for p in ref28.operating_points}
    assert at == {
        "v0.6_f100": (64, 25),
        "v0.7_f200": (32, 50),
        "v0.8_f300": (21, 75),  # 21.33 B/cycle: whole bytes, rounded down
        "v0.9_f400": (16, 100),
        "v1.0_f500": (12, 125),  # 12.8 B/cycle rounded down
    }
    slow = ref28.at_operating_point("v0.6_f100")
    assert slow.default_operating_point == "v0.6_f100"
    assert (slow.dma.dram_bytes_per_cycle, slow.dma.dram_latency_cycles) == (64, 25)
    assert slow.tensor_core == ref28.tensor_core and slow.energy == ref28.energy
    core = ref28.model_copy(update={"dma": ref28.dma.model_copy(update={"dram_clock": "core"})})
    assert {core.dram_at(p.name) for p in core.operating_points} == {(16, 100)}
