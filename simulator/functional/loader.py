"""Places a model's FP8 weights, a batch of images and their one-hot targets into DRAM per the
compiler's memory map, and reads the updated weights back."""

from __future__ import annotations

import numpy as np
import torch

from isa.compiler import CompiledProgram
from simulator.functional.state import FunctionalError, Machine
from simulator.numerics import encode, quantize
from workloads.graph import MAC_KINDS, LayerGraph

ALIAS = frozenset({"flatten", "identity", "dropout", "output"})


def fp8_codes(x: np.ndarray, fmt: str) -> np.ndarray:
    """RNE codes of float values (+0 for zeros)."""
    q = quantize(np.ascontiguousarray(x, dtype=np.float32), fmt, "rne") + np.float32(0.0)
    return encode(q, fmt)


def _real(graph: LayerGraph, name: str) -> str:
    layers = {la.name: la for la in graph.layers}
    while layers[name].kind in ALIAS:
        name = layers[name].inputs[0]
    return name


def weight_layout(graph: LayerGraph, name: str, w: np.ndarray) -> np.ndarray:
    """torch weight -> the chip's [k][kh][kw][c] (FC: c in the input's [row][col][c] order)."""
    layer = graph.layer(name)
    if layer.kind == "conv":
        return np.transpose(w, (0, 2, 3, 1))
    src = graph.layer(_real(graph, layer.inputs[0])).out_shape
    if len(src) == 3:  # torch flattens [c][h][w]; the chip's activations are [h][w][c]
        c, h, wd = src
        return np.transpose(w.reshape(w.shape[0], c, h, wd), (0, 2, 3, 1)).reshape(w.shape)
    return w


def torch_layout(graph: LayerGraph, name: str, w: np.ndarray, shape: tuple[int, ...]):
    """Inverse of `weight_layout`, to the torch parameter's `shape`."""
    layer = graph.layer(name)
    if layer.kind == "conv":
        k, c, kh, kw = shape
        return np.transpose(w.reshape(k, kh, kw, c), (0, 3, 1, 2))
    src = graph.layer(_real(graph, layer.inputs[0])).out_shape
    if len(src) == 3:
        c, h, wd = src
        return np.transpose(w.reshape(shape[0], h, wd, c), (0, 3, 1, 2)).reshape(shape)
    return w.reshape(shape)


def mac_weights(model: torch.nn.Module, graph: LayerGraph) -> dict[str, np.ndarray]:
    """float32 torch-layout weights of the MAC layers (biases are not on the chip)."""
    out = {}
    for layer in graph.layers:
        if layer.kind in MAC_KINDS:
            out[layer.name] = model.get_submodule(layer.name).weight.detach().numpy().copy()
    return out


def norm_params(model: torch.nn.Module, graph: LayerGraph) -> dict[str, np.ndarray]:
    """float32 (2, C) gamma and beta of every batch norm (its running statistics are not on
    the chip)."""
    out = {}
    for layer in graph.layers:
        if layer.kind == "batchnorm":
            mod = model.get_submodule(layer.name)
            out[layer.name] = np.stack(
                [mod.weight.detach().numpy(), mod.bias.detach().numpy()]
            ).astype(np.float32)
    return out


def load(
    m: Machine,
    prog: CompiledProgram,
    graph: LayerGraph,
    weights: dict[str, np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    gate_threshold: float = 0.0,
    norms: dict[str, np.ndarray] | None = None,
) -> None:
    """Write weights (FP8, RNE), zero momentum, full group maps, gate thresholds, batch-norm
    gamma and beta (`norms`, (2, C) float32; default 1 and 0) with zero momentum, the images
    ([row][col][c] FP8) and one-hot targets into `m.dram`."""
    fmt = m.cfg.tensor_core.operand_format
    mm = prog.memmap
    b = prog.batch
    if images.shape[0] != b or labels.shape[0] != b:
        raise FunctionalError(f"the program is for batch {b}, got {images.shape[0]} images")

    def put(name: str, data: np.ndarray) -> None:
        reg = mm[name]
        flat = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        if flat.size != reg.nbytes:
            raise FunctionalError(f"{name}: {flat.size} bytes for a {reg.nbytes}-byte region")
        m.dram[reg.addr : reg.addr + reg.nbytes] = flat

    gc = m.cfg.wsu.group_in_channels
    for name, w in weights.items():
        codes = fp8_codes(weight_layout(graph, name, w), fmt)
        put(f"w:{name}", codes)
        put(f"v:{name}", np.zeros_like(codes))
        if f"gmap:{name}" in mm:
            k = codes.shape[0]
            grp = codes.reshape(k, -1, codes.shape[-1] // gc, gc)  # [k][tap][group][c]
            put(f"gmap:{name}", (grp != 0).any(axis=(1, 3)).astype(np.uint8))
        if f"thr:{name}" in mm:
            t = encode(
                quantize(np.full(8, gate_threshold, np.float32), m.cfg.cgu.threshold_format),
                m.cfg.cgu.threshold_format,
            )
            put(f"thr:{name}", t.astype("<u2"))
    for name in mm.regions:
        if name.startswith("bn:"):
            layer = name[3:]
            c = mm[name].nbytes // 2
            gb = (norms or {}).get(layer)
            if gb is None:
                gb = np.stack([np.ones(c, np.float32), np.zeros(c, np.float32)])
            put(name, fp8_codes(np.asarray(gb, np.float32).reshape(2, c), fmt))
            put(f"bnv:{layer}", np.zeros(2 * c, np.uint8))
    put("act:x", fp8_codes(np.transpose(images, (0, 2, 3, 1)), fmt))
    classes = mm["target"].shape[0]
    onehot = np.zeros((b, classes), np.float32)
    onehot[np.arange(b), labels] = 1.0
    put("target", fp8_codes(onehot, fmt))


def read_weights(
    m: Machine,
    prog: CompiledProgram,
    graph: LayerGraph,
    shapes: dict[str, tuple[int, ...]],
    region: str = "w",
) -> dict[str, np.ndarray]:
    """FP8 codes of every MAC layer's weights (region "w") or momentum ("v"), torch layout."""
    out = {}
    for name, shape in shapes.items():
        reg = prog.memmap[f"{region}:{name}"]
        codes = m.dram[reg.addr : reg.addr + reg.nbytes].copy()
        out[name] = torch_layout(graph, name, codes, shape)
    return out


def read_region(m: Machine, prog: CompiledProgram, name: str) -> np.ndarray:
    reg = prog.memmap[name]
    return m.dram[reg.addr : reg.addr + reg.nbytes].copy()
