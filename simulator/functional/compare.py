"""One training step run two ways and compared: the functional simulator executing the
compiled program, and the independent PyTorch reference (`reference.py`); plus the weight
gradients of plain float32 autograd from the same FP8 starting point."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from isa.compiler import CompiledProgram, compile_graph
from isa.spec import RANDOM_SOURCE
from simulator.config import HardwareConfig, load_config
from simulator.functional.executor import Executor
from simulator.functional.loader import (
    fp8_codes,
    load,
    mac_weights,
    norm_params,
    read_region,
    read_weights,
)
from simulator.functional.reference import Numerics, Reference, schedule_from_program
from simulator.functional.state import Machine, Modes
from simulator.functional.tree import tile_threads
from simulator.numerics import decode, encode
from workloads.graph import LAYER_KINDS, LayerGraph, extract_graph

# every layer kind of the graph extractor is executed (grouped and depthwise convolutions too)
SUPPORTED_KINDS = LAYER_KINDS


class VerifyError(ValueError):
    """Bad verification input (model, batch, rounding)."""


@dataclass
class Step:
    """A prepared training step: program, graph, model, data and the machine after `execute`."""

    cfg: HardwareConfig
    prog: CompiledProgram
    graph: LayerGraph
    model: torch.nn.Module
    weights: dict[str, np.ndarray]  # float32 torch layout (before FP8 rounding)
    images: np.ndarray
    labels: np.ndarray
    machine: Machine | None = None
    executed: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the process's CPU time of the run (steadier on a shared machine)
    norms: dict[str, np.ndarray] | None = None  # batch norms' float32 (2, C) gamma, beta


SOURCES = RANDOM_SOURCE.values


def config_for(rounding: str, config: str = "ref28", source: str | None = None) -> HardwareConfig:
    """The configuration with every SRU stream rounding by `rounding`, with random `source`
    (None: the configuration's)."""
    cfg = load_config(config)
    if rounding not in ("rne", "sr", "sr_half", "sr_corrected"):
        raise VerifyError(f"unknown rounding {rounding!r}")
    if source is not None and source not in SOURCES:
        raise VerifyError(f"unknown random source {source!r}; choose one of {', '.join(SOURCES)}")
    update = {"variant": rounding} | ({} if source is None else {"random_source": source})
    return cfg.model_copy(update={"sru": cfg.sru.model_copy(update=update)})


def prepare(model_name: str, batch: int, cfg: HardwareConfig, seed: int = 0) -> Step:
    """A named model (`workloads.models`) at its input size, with digits images."""
    from workloads import models

    try:
        shape = models.default_input_shape(model_name)
    except models.UnknownModelError as exc:
        raise VerifyError(str(exc)) from None
    torch.manual_seed(seed)
    return prepare_model(models.build(model_name), shape, model_name, batch, cfg, seed)


def prepare_model(
    model: torch.nn.Module,
    shape: tuple[int, int, int],
    name: str,
    batch: int,
    cfg: HardwareConfig,
    seed: int = 0,
) -> Step:
    """Any traceable model: its graph, compiled program and `batch` digits images."""
    from workloads.data.digits import load_digits

    if batch < 1:
        raise VerifyError(f"batch must be at least 1, got {batch}")
    graph = extract_graph(model, shape, name)
    missing = sorted({la.kind for la in graph.layers} - SUPPORTED_KINDS)
    if missing:
        raise VerifyError(
            f"model {name}: layer kinds {', '.join(missing)} are not modelled by the functional "
            "simulator and its reference yet (docs/functional.md)"
        )
    prog = compile_graph(graph, cfg, batch, records=True)
    data = load_digits(shape)
    if batch > len(data.labels):
        raise VerifyError(f"batch {batch} exceeds the {len(data.labels)} digits images")
    idx = np.random.default_rng(seed).choice(len(data.labels), batch, replace=False)
    return Step(
        cfg,
        prog,
        graph,
        model,
        mac_weights(model, graph),
        data.images[idx],
        data.labels[idx].astype(np.int64),
        norms=norm_params(model, graph),
    )


def execute(
    step: Step,
    modes: Modes | None = None,
    record_bits: bool = False,
    gate_threshold: float = 0.0,
    threads: int | str | None = None,
) -> Step:
    """Load DRAM and execute the program (`modes` pins the sparsity modes; default dense).
    `record_bits` keeps the SRU random word of every stored result (`Machine.bits`).
    `threads`: numba threads of the large tensor-core tiles, a number or `auto`
    (`tree.tile_threads`; None: FP8SIM_THREADS, default `auto`); the results do not depend
    on it."""
    m = Machine.create(step.cfg, step.prog.memmap.top, record_bits)
    m.forced_modes = modes or Modes()
    load(
        m, step.prog, step.graph, step.weights, step.images, step.labels, gate_threshold,
        step.norms,
    )  # fmt: skip
    ex = Executor(m)
    t0, c0 = time.perf_counter(), time.process_time()
    with tile_threads(threads):
        step.executed = ex.run(step.prog.instructions)
    step.seconds = time.perf_counter() - t0
    step.cpu_seconds = time.process_time() - c0
    step.machine = m
    return step


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den else float("nan")


def float32_grads(
    step: Step,
    w8: dict[str, torch.Tensor],
    x8: torch.Tensor,
    labels: np.ndarray,
    n8: dict[str, torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """Weight gradients of plain float32 autograd (batch norms in training mode, batch
    statistics), MSE against one-hot (sum over the batch), from the FP8 weights and inputs;
    biases are zero (the chip has none) except the batch norms' beta. A batch norm's entry is
    its (2, C) gamma and beta gradients."""
    model = step.model
    n8 = n8 or {}
    model.train()
    with torch.no_grad():
        for name, w in w8.items():
            model.get_submodule(name).weight.copy_(w)
        for mod in model.modules():
            if getattr(mod, "bias", None) is not None:
                mod.bias.zero_()
        for name, gb in n8.items():
            model.get_submodule(name).weight.copy_(gb[0])
            model.get_submodule(name).bias.copy_(gb[1])
    model.zero_grad()
    y = model(x8)
    t = torch.nn.functional.one_hot(torch.as_tensor(labels), y.shape[1]).float()
    (0.5 * ((y - t) ** 2).sum()).backward()
    out = {n: model.get_submodule(n).weight.grad.numpy().copy() for n in w8}
    for n in n8:
        mod = model.get_submodule(n)
        out[n] = np.stack([mod.weight.grad.numpy(), mod.bias.grad.numpy()])
    return out


MODE_FLAGS = {
    "dense": Modes(),
    "gating": Modes(gating=True),
    "weight_sparsity": Modes(wsparse=True),
    "grad_skip": Modes(gskip=True),
    "all": Modes(True, True, True),
}


def verify(
    model_name: str,
    batch: int,
    rounding: str = "rne",
    seed: int = 0,
    mode: str = "dense",
    gate_threshold: float = 0.0,
    progress: bool = False,
    source: str | None = None,
    threads: int | str | None = None,
) -> dict:
    """Simulator vs reference (FP8 codes of the updated weights and momentum) and vs float32
    autograd. `source`: the SRUs' random source (None: the configuration's); `threads`: as
    `execute`'s."""
    if mode not in MODE_FLAGS:
        raise VerifyError(f"unknown mode {mode!r}; choose one of {', '.join(MODE_FLAGS)}")
    step = prepare(model_name, batch, config_for(rounding, source=source), seed)
    res = verify_step(step, MODE_FLAGS[mode], gate_threshold, progress=progress, threads=threads)
    return {**res, "mode": mode}


def mode_name(modes: Modes) -> str:
    on = [
        n
        for n, f in (("gating", modes.gating), ("wsparse", modes.wsparse), ("gskip", modes.gskip))
        if f
    ]
    return "+".join(on) or "dense"


def region_bits(step: Step) -> dict[str, torch.Tensor]:
    """The recorded random words of every activation, error, weight and momentum region, per
    image [row][col][channel] (batched) or [k][kh][kw][c]."""
    m, mm = step.machine, step.prog.memmap
    assert m is not None and m.bits is not None
    out = {}
    for name, reg in mm.regions.items():
        if not name.startswith(("act:", "err:", "w:", "v:", "bn:", "bnv:")):
            continue
        raw = torch.from_numpy(m.bits["dram"][reg.addr : reg.addr + reg.nbytes].astype(np.int64))
        if reg.batched and len(reg.shape) == 3:
            c, h, w = reg.shape
            raw = raw.reshape(-1, h, w, c)
        elif reg.batched:
            raw = raw.reshape(-1, *reg.shape)
        out[name] = raw
    # norm_fwd results (per image, channel tiles in order): "norm:L", (B, h, w, C)
    per: dict[str, dict[int, list[np.ndarray]]] = {}
    for pc, img, ch, words in m.norm_words:
        ann = step.prog.annotations[pc]
        note = ann.get("note", "")
        name = note[len("normalise ") :] if note.startswith("normalise ") else ann["layer"]
        per.setdefault(name, {}).setdefault(img, []).append(words.reshape(-1, ch))
    for name, imgs in per.items():
        c, h, w = step.graph.layer(name).in_shape
        out[f"norm:{name}"] = torch.from_numpy(
            np.stack(
                [np.concatenate(imgs[i], axis=1).reshape(h, w, c) for i in sorted(imgs)]
            ).astype(np.int64)
        )
    # a fused add's results reach DRAM as the ReLU's after it (ReLU keeps the words)
    for name in mm.on_chip:
        la = step.graph.layer(name[4:]) if name.startswith("act:") else None
        if la is None or la.kind != "add":
            continue
        cons = [x for x in step.graph.layers if la.name in x.inputs]
        if len(cons) == 1 and cons[0].kind == "relu" and f"act:{cons[0].name}" in out:
            out[name] = out[f"act:{cons[0].name}"]
    return out


def verify_step(
    step: Step,
    modes: Modes | None = None,
    gate_threshold: float = 0.0,
    progress: bool = False,
    threads: int | str | None = None,
) -> dict:
    """Execute a prepared step with the sparsity `modes` (default dense) and compare it with
    the reference and float32 autograd. Gate thresholds of every gated layer are
    `gate_threshold`; pruning and skipping use the config's wsu / gsu thresholds."""
    cfg = step.cfg
    modes = modes or Modes()
    rounding = cfg.sru.variant
    model_name, batch = step.graph.model_name, step.prog.batch
    stochastic = rounding != "rne"
    execute(step, modes, stochastic, gate_threshold, threads)
    m, prog, graph = step.machine, step.prog, step.graph
    assert m is not None
    fmt = cfg.tensor_core.operand_format
    shapes = {n: w.shape for n, w in step.weights.items()}
    codes0 = {n: fp8_codes(w, fmt) for n, w in step.weights.items()}
    w0 = {n: torch.from_numpy(decode(c, fmt)) for n, c in codes0.items()}
    x8 = torch.from_numpy(decode(fp8_codes(step.images, fmt), fmt))
    n8 = {
        n: torch.from_numpy(decode(fp8_codes(gb, fmt), fmt)) for n, gb in (step.norms or {}).items()
    }
    classes = prog.memmap["target"].shape[0]
    t8 = torch.nn.functional.one_hot(torch.as_tensor(step.labels), classes).float()
    tc = cfg.tensor_core
    num = Numerics(
        tc.operand_format,
        tc.accumulator_format,
        tc.alignment_width_bits,
        tc.dp_width,
        cfg.sru.random_bits,
        {s: rounding for s in ("act", "err", "wgt", "mom")},
        cfg.sru.random_source,
        cfg.sru.units,
    )
    lr, mom, wd = m.sgd_lr, m.sgd_momentum, m.sgd_wd  # as the program's sgdcfg set them
    sched = schedule_from_program(prog, graph)
    ref = Reference(graph, sched, num, lr, mom, wd)
    if modes.gating:
        thr = float(
            decode(
                encode(np.float32([gate_threshold]), cfg.cgu.threshold_format),
                cfg.cgu.threshold_format,
            )[0]
        )
        ref.gate_thr = {n: thr for n, s in sched.items() if len(s.fp_passes) == 2}
        ref.gate_group = cfg.cgu.group_size_channels
    if modes.wsparse:
        ref.prune_threshold, ref.prune_gc = m.ws_threshold, m.ws_gc
    t0 = time.perf_counter()
    new_w, grads, _, _ = ref.run(
        w0,
        x8,
        t8,
        gskip=modes.gskip,
        gs_threshold=m.gs_threshold,
        gs_criterion=m.gs_criterion,
        bits=region_bits(step) if stochastic else None,
        norms8=n8,
        progress=progress,
    )
    ref_s = time.perf_counter() - t0
    f32 = float32_grads(step, w0, x8, step.labels, n8)
    sim_w = read_weights(m, prog, graph, shapes)
    sim_v = read_weights(m, prog, graph, shapes, region="v")
    layers, ok = [], True
    for name in shapes:
        ref_codes = encode(new_w[name].contiguous().numpy(), fmt)
        mism = int(np.count_nonzero(ref_codes != sim_w[name]))
        # the momentum is the step's rounded gradient: compared too, since a small update
        # leaves most weight codes as they were
        ref_v = encode(ref.momentum_out[name].contiguous().numpy(), fmt)
        mism_v = int(np.count_nonzero(ref_v != sim_v[name]))
        ok &= mism == 0 and mism_v == 0
        v = decode(sim_v[name], fmt)
        g16 = ref.torch_layout(graph.layer(name), grads[name].float(), shapes[name]).numpy()
        layers.append({
            "layer": name,
            "weights": int(sim_w[name].size),
            "mismatched_codes": mism,
            "mismatched_momentum_codes": mism_v,
            "changed_codes": int(np.count_nonzero(sim_w[name] != codes0[name])),
            "zero_weights": int(np.count_nonzero(sim_w[name] == 0)),
            "cos_sim_update_vs_f32": _cos(v, f32[name]),
            "cos_ref_fp16_grad_vs_f32": _cos(g16, f32[name]),
        })  # fmt: skip
    for name, gb in n8.items():  # batch norms: gamma | beta, updated on chip by sgd
        sim = read_region(m, prog, f"bn:{name}")
        ref_codes = encode(ref.norm_out[name].contiguous().numpy(), fmt).reshape(-1)
        mism = int(np.count_nonzero(ref_codes != sim))
        sim_nv = read_region(m, prog, f"bnv:{name}")
        ref_v = encode(ref.norm_mom[name].contiguous().numpy(), fmt).reshape(-1)
        mism_v = int(np.count_nonzero(ref_v != sim_nv))
        ok &= mism == 0 and mism_v == 0
        v = decode(sim_nv, fmt)
        layers.append({
            "layer": name,
            "weights": int(sim.size),
            "mismatched_codes": mism,
            "mismatched_momentum_codes": mism_v,
            "changed_codes": int(np.count_nonzero(sim != fp8_codes(gb.numpy(), fmt).reshape(-1))),
            "zero_weights": int(np.count_nonzero(sim == 0)),
            "cos_sim_update_vs_f32": _cos(v, f32[name]),
            "cos_ref_fp16_grad_vs_f32": _cos(ref.norm_grads[name].numpy(), f32[name]),
        })  # fmt: skip
    return {
        "model": model_name,
        "batch": batch,
        "rounding": rounding,
        "source": cfg.sru.random_source,
        "mode": mode_name(modes),
        "skipped_images": int((~ref.keep).sum()) if modes.gskip else 0,
        "gate_density": {n: float(g.float().mean()) for n, g in ref.gates.items()},
        "ok": bool(ok),
        "executed_instructions": step.executed,
        "simulator_s": step.seconds,
        "reference_s": ref_s,
        "layers": layers,
    }


def run_functional(
    model_name: str,
    batch: int,
    cfg: HardwareConfig,
    mode: str = "all",
    seed: int = 0,
    threads: int | str | None = None,
) -> dict:
    """Execute one training step of a named model on `batch` digits images (for `fp8sim run
    --mode functional`): the sparsity masks are the ones the units compute on this data."""
    if mode not in MODE_FLAGS:
        raise VerifyError(f"unknown mode {mode!r}; choose one of {', '.join(MODE_FLAGS)}")
    step = execute(prepare(model_name, batch, cfg, seed), MODE_FLAGS[mode], threads=threads)
    m = step.machine
    assert m is not None
    fmt = cfg.tensor_core.operand_format
    shapes = {n: w.shape for n, w in step.weights.items()}
    after = read_weights(m, step.prog, step.graph, shapes)
    layers = []
    for name, w in step.weights.items():
        before = fp8_codes(w, fmt)
        layers.append(
            {
                "layer": name,
                "weights": int(before.size),
                "changed_codes": int(np.count_nonzero(after[name] != before)),
                "zero_weights": int(np.count_nonzero(after[name] == 0)),
            }
        )
    return {
        "model": model_name,
        "batch": batch,
        "mode": mode,
        "rounding": cfg.sru.variant,
        "executed_instructions": step.executed,
        "seconds": step.seconds,
        "skipped_images": int(np.count_nonzero(m.buffers["msk"][:batch]))
        if mode in ("grad_skip", "all")
        else 0,
        "layers": layers,
    }
