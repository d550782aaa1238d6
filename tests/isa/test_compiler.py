"""The compiler's done-means: for every shipped model, the binary survives disasm -> asm
byte for byte, the tensor-core work by phase equals the graph's dense training-step MACs, and
the program is well formed (tokens, transfers inside buffers and tensors, outputs written)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from isa.analysis import (
    check_tokens,
    check_transfers,
    dram_write_counts,
    executed_counts,
    tc_work_by_phase,
)
from isa.asm import assemble
from isa.compiler import CompileError, compile_graph
from isa.disasm import disassemble
from isa.encoding import decode
from simulator.config import load_config
from workloads.graph import LayerGraph, graph_for
from workloads.models import MODEL_NAMES

BATCH = 2


@cache
def graph(name: str) -> LayerGraph:
    return graph_for(name)


@cache
def ref28():
    return load_config("ref28")


def dense_by_phase(g: LayerGraph, batch: int) -> dict[str, int]:
    fp = sum(layer.macs_fwd for layer in g.mac_layers)
    bp = sum(layer.macs_fwd for layer in g.mac_layers if g.needs_data_gradient(layer.name))
    return {"fp": fp * batch, "bp": bp * batch, "wu": fp * batch}


def regions(program):
    return sorted((r.addr, r.addr + r.nbytes) for r in program.memmap.regions.values())


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_compiles_round_trips_and_does_the_dense_work(model):
    g = graph(model)
    cfg = ref28()
    prog = compile_graph(g, cfg, BATCH)
    binary = prog.binary
    # disasm of the binary, assembled again, gives the identical bytes (and so does the
    # annotated .s the compiler writes)
    assert assemble(disassemble(binary)) == binary
    assert assemble(prog.text()) == binary
    program = decode(binary)
    work = tc_work_by_phase(program)
    assert work == dense_by_phase(g, BATCH)
    assert sum(work.values()) == g.macs_train_per_image_dense * BATCH
    assert check_tokens(program) == {}  # no wait without a signal, nothing left over
    assert check_transfers(program, cfg, regions(prog)) == []
    executed = executed_counts(program)
    assert executed["halt"] == 1 and executed["tc.fwd"] > 0 and executed["tc.wgr"] > 0
    assert executed["gs.decide"] == BATCH  # one skip decision per image
    assert len(prog.annotations) == len(program)
    phases = {a["phase"] for a in prog.annotations}
    assert {"setup", "fp", "loss", "bp", "wu", "end"} <= phases


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("model", ["vgg7_bn", "resnet20", "mobilenet_v1_half"])
def test_every_output_tensor_is_written_exactly_once(model, records):
    prog = compile_graph(graph(model), ref28(), BATCH, records=records)
    counts = dram_write_counts(prog.instructions, prog.memmap.top)
    for r in prog.memmap.regions.values():
        seg = counts[r.addr : r.addr + r.nbytes]
        if r.kind in ("target", "gate_threshold") or r.name == "act:x":
            # inputs of the step (and the gate thresholds, not trained by the program yet)
            assert not seg.any(), r.name
        elif r.name in prog.memmap.records and not records:
            assert not seg.any(), (r.name, "is a record but stored")  # verification only
        else:
            assert (seg == 1).all(), (r.name, int(seg.min()), int(seg.max()))
    # and every tensor is read by someone: activations by the next layer or the loss, errors by
    # the layer that propagates them, masks and statistics by the backward pass; except the
    # rounding records of values a fused block consumed on chip (read by verify's reference)
    reads = dram_write_counts(prog.instructions, prog.memmap.top, op="dma.ld")
    for r in prog.memmap.regions.values():
        seg = reads[r.addr : r.addr + r.nbytes]
        if r.name in prog.memmap.records:
            assert not seg.any(), (r.name, "is a record but read")
        else:
            assert seg.all(), (r.name, "has bytes never read")


def test_batch_is_a_hardware_loop_not_unrolled():
    g = graph("resnet20")
    # batch 8, not 2: a software-pipelined image loop peels the first and last image, a
    # forward block rotating 3 or 4 slots unrolls its loop that many times (8 and 128 leave
    # the same remainders), and a loop of one iteration is no loop
    small, big = compile_graph(g, ref28(), 8), compile_graph(g, ref28(), 128)
    assert len(small.instructions) == len(big.instructions)
    w8, w128 = tc_work_by_phase(small.instructions), tc_work_by_phase(big.instructions)
    assert {p: v * 16 for p, v in w8.items()} == w128
    # image loops: the batch, the pipelined B - 1, or the B / n iterations of a rotation
    counts = {128, 127, 128 // 3, 128 // 4}
    batch_loops = [i for i in big.instructions if i.op == "loop" and i["count"] in counts]
    assert len(batch_loops) >= len(g.mac_layers) * 2  # at least FP and WU of every layer


def test_weight_update_tiles_are_hardware_loops():
    g = graph("resnet18")
    prog = compile_graph(g, ref28(), BATCH)
    # layer4 weight gradients (512 x 512 x 3 x 3) take many (k, c) tiles; their bodies are
    # looped, so the static program stays far below the executed one
    s = prog.summary()
    assert s["max_loop_depth"] == 3  # k tiles, c tiles, images
    static = sum(1 for i in prog.instructions if i.op == "tc.wgr")
    executed = executed_counts(prog.instructions)["tc.wgr"]
    assert executed > 4 * BATCH * static  # each static tc.wgr serves many tiles


def test_gating_and_group_lasso_are_expressed():
    prog = compile_graph(graph("vgg7"), ref28(), BATCH)
    ops = executed_counts(prog.instructions)
    # vgg7: conv2..conv5 have C divisible by G = 4: base + conditional passes
    assert ops["cg.gate"] > 0 and ops["cgcfg"] == 4
    passes = {i["pass"] for i in prog.instructions if i.op == "tc.fwd"}
    assert passes == {0, 1, 2}  # full (conv1, fc), base, cond
    assert ops["ws.prune"] == ops["ws.norm"] > 0
    assert ops["sgd"] > 0


@pytest.fixture
def small_config(tmp_path: Path):
    f = tmp_path / "small.yaml"
    f.write_text(
        "extends: ref28\nname: small\nbuffers:\n"
        "  activation: {size_bytes: 32768}\n  weight: {size_bytes: 16384}\n"
        "  error: {size_bytes: 32768}\n  mask: {size_bytes: 4096}\n"
    )
    return load_config(f)


@pytest.mark.parametrize("model", ["vgg7", "resnet20"])
def test_tiling_follows_smaller_buffers(model, small_config):
    g = graph(model)
    prog = compile_graph(g, small_config, BATCH)
    big = compile_graph(g, ref28(), BATCH)
    assert len(prog.instructions) > len(big.instructions)  # more, smaller tiles
    assert check_transfers(prog.instructions, small_config, regions(prog)) == []
    assert tc_work_by_phase(prog.instructions) == dense_by_phase(g, BATCH)
    assert check_tokens(prog.instructions) == {}
    if model == "vgg7":  # 16 outputs x 3x3 x 128 inputs exceed the 16 KiB weight buffer
        assert any("features.conv4: channel gating not expressed" in n for n in prog.notes)
        # BP of conv5 would hold 256 outputs x 3x3 x 8 inputs (one Lasso group): 18 KiB
        assert any("features.conv5: group-Lasso sparsity not expressed" in n for n in prog.notes)


def test_too_small_buffers_are_a_clear_error(tmp_path: Path):
    f = tmp_path / "tiny.yaml"
    f.write_text("extends: ref28\nname: tiny\nbuffers:\n  weight: {size_bytes: 256}\n")
    with pytest.raises(CompileError, match=r"layer features\.conv\d: no \w+ tiling fits"):
        compile_graph(graph("vgg7"), load_config(f), BATCH)


def test_config_width_must_match_the_isa(tmp_path: Path):
    f = tmp_path / "w64.yaml"
    f.write_text("extends: ref28\ncontroller: {instruction_width_bits: 64}\n")
    with pytest.raises(CompileError, match="instruction_width_bits is 64, the ISA's is 128"):
        compile_graph(graph("vgg7"), load_config(f), BATCH)


def test_skip_flags_must_fit():
    with pytest.raises(CompileError, match="skip flags do not fit"):
        compile_graph(graph("vgg7"), ref28(), 100_000)


def test_dram_capacity_is_checked(tmp_path: Path):
    f = tmp_path / "small_dram.yaml"
    f.write_text("extends: ref28\ndma: {dram_bytes: 65536}\n")
    with pytest.raises(CompileError, match=r"does not fit in the configured DRAM \(65536 bytes\)"):
        compile_graph(graph("vgg7"), load_config(f), BATCH)


def test_elementwise_chains_stay_on_chip():
    """ResNet-20: batch norm -> [residual add] -> ReLU run as one forward block; the normalised
    and summed activations and the error between a norm and its ReLU never reach DRAM, and the
    norms' statistics are taken by the convs that produce their inputs."""
    prog = compile_graph(graph("resnet20"), ref28(), BATCH)
    mm = prog.memmap
    assert {"act:bn1", "act:layer1.0.bn1", "act:layer1.0.bn2", "act:add"} <= set(mm.on_chip)
    assert "err:layer1.0.bn1" in mm.on_chip  # fused ReLU backward
    assert "act:relu" in mm and "act:layer1.0.relu2" in mm  # BP reads ReLU outputs
    with pytest.raises(CompileError, match="no DRAM region"):
        mm["act:bn1"]
    blocks = {(a["layer"], a["phase"]) for a in prog.annotations}
    assert ("relu", "fp") not in blocks and ("add", "fp") not in blocks
    sfu = [
        (prog.annotations[i]["layer"], ins["op"])
        for i, ins in enumerate(prog.instructions)
        if ins.op == "sfu"
    ]
    from isa.spec import SFU_OP

    stat_layers = {layer for layer, op in sfu if SFU_OP.values[op] == "norm_stat"}
    assert stat_layers and all(layer.endswith(("conv1", "conv2", ".0")) for layer in stat_layers)
    g = graph("resnet20")
    assert sum(1 for ly in g.layers if ly.kind == "batchnorm") == len(stat_layers)


def test_dense_program_has_no_sparsity_machinery():
    g = graph("resnet20")
    sparse = compile_graph(g, ref28(), BATCH)
    dense = compile_graph(g, ref28(), BATCH, sparse=False)
    ops = executed_counts(dense.instructions)
    assert "cg.gate" not in ops and "ws.norm" not in ops and "ws.prune" not in ops
    assert {i["pass"] for i in dense.instructions if i.op == "tc.fwd"} == {0}
    mode = next(i for i in dense.instructions if i.op == "mode")
    assert (mode["gating"], mode["wsparse"], mode["gskip"]) == (0, 0, 0)
    assert tc_work_by_phase(dense.instructions) == tc_work_by_phase(sparse.instructions)
    assert check_tokens(dense.instructions) == {}


def test_backward_transfers_carry_the_image_skip_flag():
    """Every DMA transfer inside a BP/WU image loop names its image (gsk = 1, rimg = r1), so a
    skipped image moves no data; forward and persistent transfers never do."""
    prog = compile_graph(graph("vgg7"), ref28(), BATCH)
    flagged = {"fp": 0, "bp": 0, "wu": 0, "loss": 0}
    for ins, a in zip(prog.instructions, prog.annotations, strict=True):
        if ins.op in ("dma.ld", "dma.st") and ins["gsk"]:
            assert ins["rimg"] == 1
            flagged[a["phase"]] = flagged.get(a["phase"], 0) + 1
    assert flagged["fp"] == flagged["loss"] == 0
    assert flagged["bp"] > 0 and flagged["wu"] > 0
    # persistent weight loads of the weight-update blocks stay unflagged
    wu_weights = [
        ins
        for ins, a in zip(prog.instructions, prog.annotations, strict=True)
        if a["phase"] in ("bp", "wu") and ins.op == "dma.ld" and ins["buf"] == 1
    ]
    assert any(not ins["gsk"] for ins in wu_weights)


def test_convs_normalise_their_input_and_pipeline_the_statistics():
    """ResNet-20: a conv whose input is a batch norm's (+ add, ReLU) output applies that norm
    as it loads its input (the norm has no forward block left), stores the normalised input
    once, and takes its own output's statistics one image late (a zeroed tile for image 0,
    the last image after the loop): B + 1 executions per image loop."""
    from isa.spec import SFU_OP

    prog = compile_graph(graph("resnet20"), ref28(), BATCH)
    blocks = {(a["layer"], a["phase"]) for a in prog.annotations}
    assert ("layer1.0.bn1", "fp") not in blocks and ("layer2.0.shortcut.1", "fp") not in blocks
    assert ("layer3.2.bn2", "fp") in blocks  # read by the average pool: a block of its own
    ops = [
        (a["layer"], SFU_OP.values[ins["op"]])
        for ins, a in zip(prog.instructions, prog.annotations, strict=True)
        if ins.op == "sfu"
    ]
    assert ("layer1.0.conv2", "norm_fwd") in ops and ("layer2.1.conv1", "add") in ops
    from isa.analysis import _multiplicities

    mult = _multiplicities(prog.instructions)
    stats = sum(
        mult[i]
        for i, ins in enumerate(prog.instructions)
        if ins.op == "sfu"
        and SFU_OP.values[ins["op"]] == "norm_stat"
        and prog.annotations[i]["layer"] == "layer1.0.conv2"
    )
    assert stats == BATCH + 1


def _sfu_ops(prog) -> set[tuple[str, str, str]]:
    from isa.spec import SFU_OP

    return {
        (a["layer"], a["phase"], SFU_OP.values[ins["op"]])
        for ins, a in zip(prog.instructions, prog.annotations, strict=True)
        if ins.op == "sfu"
    }


@pytest.mark.parametrize("sparse", [True, False])
def test_relu_and_max_pool_run_in_the_convs(sparse):
    """VGG-7: conv -> ReLU -> max-pool runs in the conv's forward image loop (the ReLU's output
    stays on chip; the conv output, pooled output and argmax are stored), and the backward of
    the ReLU and the pool runs in the data-gradient block of the conv reading the pool, which
    stores the conv's error (in the ReLU's error region). Only the pool before the FC (not a
    conv) keeps its backward blocks."""
    prog = compile_graph(graph("vgg7"), ref28(), BATCH, sparse=sparse)
    mm = prog.memmap
    blocks = {(a["layer"], a["phase"]) for a in prog.annotations}
    for n in range(1, 6):
        assert (f"features.relu{n}", "fp") not in blocks
        assert (f"features.pool{n}", "fp") not in blocks
        assert f"act:features.relu{n}" in mm.on_chip
        assert f"act:features.conv{n}" in mm and f"argmax:features.pool{n}" in mm
    for n in range(1, 5):
        assert (f"features.relu{n}", "bp") not in blocks
        assert (f"features.pool{n}", "bp") not in blocks
        assert mm.resolve_name(f"err:features.conv{n}") == f"err:features.relu{n}"
    assert ("features.relu5", "bp") in blocks and ("features.pool5", "bp") in blocks
    ops = _sfu_ops(prog)
    assert ("features.conv1", "fp", "relu_fwd") in ops
    assert ("features.conv1", "fp", "maxpool_fwd") in ops
    assert ("features.conv2", "bp", "relu_bwd") in ops
    assert ("features.conv2", "bp", "maxpool_bwd") in ops
    assert check_tokens(prog.instructions) == {}


@pytest.mark.parametrize("sparse", [True, False])
def test_batch_norm_backward_runs_in_the_convs(sparse):
    """ResNet-20: the backward of conv1 -> bn1 -> ReLU -> conv2 in a residual block runs in
    the two convs' data-gradient blocks: conv2's accumulates bn1's gradient sums on each
    image's dX (one norm_bwd_stat per image), conv1's applies relu_bwd and norm_bwd to its
    output errors as it loads them; the norm keeps only the update of gamma and beta."""
    from isa.analysis import _multiplicities
    from isa.spec import SFU_OP

    prog = compile_graph(graph("resnet20"), ref28(), BATCH, sparse=sparse)
    blocks = {(a["layer"], a["phase"]) for a in prog.annotations}
    ops = _sfu_ops(prog)
    for blk in ("layer1.0", "layer2.1", "layer3.2"):
        assert (f"{blk}.bn1", "bp") not in blocks and (f"{blk}.bn1", "wu") in blocks
        assert (f"{blk}.conv2", "bp", "norm_bwd_stat") in ops
        assert (f"{blk}.conv1", "bp", "norm_bwd") in ops
        assert f"bngrad:{blk}.bn1" in prog.memmap
    mult = _multiplicities(prog.instructions)
    stat = [
        mult[i]
        for i, (ins, a) in enumerate(zip(prog.instructions, prog.annotations, strict=True))
        if ins.op == "sfu"
        and SFU_OP.values[ins["op"]] == "norm_bwd_stat"
        and a["layer"] == "layer1.0.conv2"
    ]
    # one op per image: in the pipelined loop and after it (the last image's work on dX,
    # `bp_pipelined`; both programs pipeline it since session 6)
    assert sum(stat) == BATCH and len(stat) == 2
    assert check_tokens(prog.instructions) == {}


def test_residual_error_merge_runs_in_the_next_conv():
    """ResNet-20: a block output's ReLU is read by the next block's first conv and its residual
    add; that conv's data-gradient block adds the add's error part to each image's dX, stores
    the sum and the ReLU's input error (relu_bwd): the ReLU has no backward block left, except
    before the average pool (one reader)."""
    prog = compile_graph(graph("resnet20"), ref28(), BATCH)
    blocks = {(a["layer"], a["phase"]) for a in prog.annotations}
    ops = _sfu_ops(prog)
    for relu, conv in (("layer1.0.relu2", "layer1.1.conv1"), ("layer2.2.relu2", "layer3.0.conv1")):
        assert (relu, "bp") not in blocks
        assert (conv, "bp", "add") in ops and (conv, "bp", "relu_bwd") in ops
    assert ("layer3.2.relu2", "bp") in blocks
    assert check_tokens(prog.instructions) == {}
