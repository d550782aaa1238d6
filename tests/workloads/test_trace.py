"""Trace format: round trip, validation of damaged files, synthetic densities, accounting."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from workloads.graph import graph_for
from workloads.trace import (
    GateInfo,
    Trace,
    TraceError,
    load_trace,
    measured,
    save_trace,
    step_macs,
    summary,
    synthesize,
)


@pytest.fixture(scope="module")
def vgg_graph():
    return graph_for("vgg7")


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory, vgg_graph):
    t = synthesize(
        vgg_graph,
        {"gate": 0.4, "weight_group": 0.7, "grad_skip": 0.25},
        batch=16,
        seed=5,
        iterations=2,
    )
    path = tmp_path_factory.mktemp("tr") / "t.npz"
    save_trace(t, path)
    return t, path


def _same(a: Trace, b: Trace) -> None:
    assert a.graph == b.graph and a.batch == b.batch and a.gate_layers == b.gate_layers
    assert a.lasso_layers == b.lasso_layers and a.meta == b.meta
    for x, y in zip(a.iterations, b.iterations, strict=True):
        assert x.step == y.step and np.array_equal(x.skip, y.skip)
        for n in x.gates:
            assert np.array_equal(x.gates[n], y.gates[n])
        for n in x.wgroups:
            assert np.array_equal(x.wgroups[n], y.wgroups[n])


def test_round_trip(synth_file):
    t, path = synth_file
    _same(t, load_trace(path))
    g = t.iterations[0].gates["features.conv2"]
    assert g.shape == (16, 4, 16, 16) and g.dtype == bool  # 64 out channels / 16 per group


def test_uniform_synthetic_densities_close_to_request(vgg_graph):
    t = synthesize(
        vgg_graph, {"gate": 0.3, "weight_group": 0.6, "grad_skip": 0.5}, batch=64, seed=1
    )
    m = measured(t)
    assert m["gate_density"] == pytest.approx(0.3, abs=0.02)
    assert m["weight_group_density"] == pytest.approx(0.6, abs=0.03)
    assert m["grad_skip_fraction"] == pytest.approx(0.5, abs=0.15)
    assert m["flops_reduction"] > 2


def test_realistic_skew_varies_layers_and_groups(vgg_graph):
    t = synthesize(vgg_graph, {"gate": 0.4}, batch=16, seed=2, skew="realistic")
    per_layer = [g.mean() for g in t.iterations[0].gates.values()]
    assert max(per_layer) - min(per_layer) > 0.05
    per_group = t.iterations[0].gates["features.conv3"].mean(axis=(0, 2, 3))
    assert per_group.std() > 0.1  # uniform would give ~0.01 at this size


def test_dense_trace_reduction_is_one(vgg_graph):
    t = synthesize(vgg_graph, {}, batch=4)
    assert measured(t)["flops_reduction"] == pytest.approx(1.0)


def test_accounting_by_hand(vgg_graph):
    """conv2 of VGG-7: 32 -> 64 channels, 16x16, 3x3; G=4 so 8 base input channels."""
    b = 2
    info = {"features.conv2": GateInfo(8, 16)}
    gates = {"features.conv2": np.zeros((b, 4, 16, 16), bool)}
    gates["features.conv2"][0, 1, 3, 4] = True  # one group of 16 channels at one pixel
    wg = {"features.conv2": np.ones((64, 4), bool)}
    wg["features.conv2"][20, 2] = False  # out channel 20 (group 1), conditional in-group
    skip = np.array([False, True])
    m = step_macs(vgg_graph, b, gates, info, wg, 8, skip)
    conv2 = vgg_graph.layer("features.conv2")
    other_fwd = vgg_graph.macs_fwd_per_image - conv2.macs_fwd
    base = 64 * 256 * 8 * 9  # every output pixel x channel, base path (8 channels x 9 taps)
    cond_img0 = 16 * 24 * 9 - 8 * 9  # one pixel, 16 channels x 24 cond channels, minus a group
    fp = b * other_fwd + b * base + cond_img0
    assert m.fp == fp
    conv1 = vgg_graph.layer("features.conv1").macs_fwd
    kept_other = other_fwd  # image 1 is skipped: only image 0 does BP/WU
    # BP/WU reuse the gate bitmap: gated outputs have zero error, so only the one ungated
    # (pixel, group) of image 0 costs MACs, on both paths (32 input channels x 9 taps)
    bwd_img0 = 16 * 32 * 9 - 8 * 9
    assert m.wu == kept_other + bwd_img0
    assert m.bp == m.wu - conv1  # the first conv has no BP
    assert m.dense == b * vgg_graph.macs_train_per_image_dense


def test_summary_fields(synth_file):
    t, _ = synth_file
    s = summary(t)
    assert s["model"] == "vgg7" and s["macs_fwd_per_image"] == 13_863_424
    names = [r["name"] for r in s["layers"]]
    assert "features.conv2" in names
    row = s["layers"][names.index("features.conv2")]
    assert row["in_shape"] == [32, 16, 16] and row["macs_fwd"] == 4_718_592
    assert set(s["measured"]) >= {
        "gate_density",
        "weight_group_density",
        "grad_skip_fraction",
        "flops_reduction",
    }


# ---- damaged files ---------------------------------------------------------------------------
def _rewrite(src, dst, change):
    """Copy an npz, letting `change(name, array)` return a replacement (or None to drop)."""
    with np.load(src, allow_pickle=False) as z:
        items = {k: z[k] for k in z.files}
    out = {}
    for k, v in items.items():
        nv = change(k, v)
        if nv is not None:
            out[k] = nv
    np.savez(dst, **out)


def test_missing_and_truncated(synth_file, tmp_path):
    _, path = synth_file
    with pytest.raises(TraceError, match="not found"):
        load_trace(tmp_path / "nope.npz")
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match="unreadable"):
        load_trace(cut)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"hello")
    with pytest.raises(TraceError, match=r"not an \.npz archive") as err:
        load_trace(junk)
    assert "pickle" not in str(err.value)  # not numpy's hint to load it unsafely
    with pytest.raises(TraceError, match="not a regular file"):
        load_trace(tmp_path)


def test_flipped_byte_in_a_mask(synth_file, tmp_path):
    _, path = synth_file
    bad = tmp_path / "flip.npz"

    def flip(k, v):
        if k == "i0.gate.features.conv3":
            v = v.copy()
            v[3] ^= 0x10
        return v

    _rewrite(path, bad, flip)
    with pytest.raises(TraceError, match="hash mismatch"):
        load_trace(bad)


def test_corrupted_zip_member(synth_file, tmp_path):
    """Bytes changed inside the compressed file: zip's CRC or the hash catches it."""
    _, path = synth_file
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("i0.gate.features.conv2.npy")
    h = info.header_offset  # local header: name and extra lengths at offsets 26 and 28
    name_len = int.from_bytes(data[h + 26 : h + 28], "little")
    extra_len = int.from_bytes(data[h + 28 : h + 30], "little")
    start = h + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    bad = tmp_path / "crc.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(TraceError):
        load_trace(bad)


def test_schema_version_header_and_declarations(synth_file, tmp_path):
    _, path = synth_file
    p = tmp_path / "x.npz"
    _rewrite(
        path,
        p,
        lambda k, v: (
            np.array(json.dumps({"format": "fp8sim-trace", "version": 2})) if k == "schema" else v
        ),
    )
    with pytest.raises(TraceError, match="schema version 2"):
        load_trace(p)
    _rewrite(path, p, lambda k, v: None if k == "i1.skip" else v)
    with pytest.raises(TraceError, match=r"declared array 'i1\.skip' is missing"):
        load_trace(p)
    _rewrite(path, p, lambda k, v: v)
    with np.load(p) as z:
        items = {k: z[k] for k in z.files}
    items["extra"] = np.zeros(3)
    np.savez(p, **items)
    with pytest.raises(TraceError, match="undeclared array 'extra'"):
        load_trace(p)
    _rewrite(path, p, lambda k, v: None if k == "sha256" else v)
    with pytest.raises(TraceError, match="no 'sha256'"):
        load_trace(p)


def test_consistent_but_wrong_header_is_caught(synth_file, tmp_path):
    """A header edited and re-hashed still has to agree with the graph and masks."""
    from workloads.trace.format import _digest

    _, path = synth_file
    with np.load(path) as z:
        items = {k: z[k] for k in z.files}
    header = json.loads(str(items["header"][()]))
    header["batch"] = 8  # masks were written for 16
    hj = json.dumps(header, sort_keys=True)
    items["header"] = np.array(hj)
    arrays = {k: v for k, v in items.items() if k not in ("schema", "header", "sha256")}
    items["sha256"] = np.array(_digest(hj, arrays))
    p = tmp_path / "h.npz"
    np.savez(p, **items)
    with pytest.raises(TraceError, match=r"gate bitmap of 'features\.conv2' has shape"):
        load_trace(p)


def test_save_refuses_inconsistent_trace(vgg_graph):
    t = synthesize(vgg_graph, {}, batch=2)
    it = t.iterations[0]
    it.gates["features.conv2"] = it.gates["features.conv2"][:, :2]
    with pytest.raises(TraceError, match=r"features\.conv2"):
        save_trace(t, "/dev/null")
