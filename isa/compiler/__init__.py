"""The compiler: a layer graph (from `workloads.graph`) and a hardware configuration to the
program of one training step, its DRAM memory map and per-instruction annotations.

    prog = compile_graph(graph_for("resnet20"), load_config("ref28"), batch=128)
    prog.write("out/resnet20")  # .bin, .s (annotated), .memmap.json, .annotations.json

What the program looks like (what a simulator of it can rely on):
- Order: setup (`mode`, `sru` x4, `gscfg`, `wscfg`, `sgdcfg`); FP layer by layer; loss and the
  gradient-skip decision per image; then, in reverse layer order, error merging (tensors read by
  several layers), BP (data gradient, with the weights the forward pass used) and WU (weight
  gradient, SGD, group pruning) per layer; `halt`.
- Blocks: each layer/phase/pass writes its `layer` descriptor, loads persistent data (weights,
  statistics) and signals the consumer unit through `sync`, pre-signals token 1 once per buffer
  slot, runs a hardware loop over the images, drains token 1 and ends with `barrier`. For
  ordinary convs/FC the forward k-tiles and the weight-update (k, c) tiles are hardware loops
  around such blocks, and special-function passes loop over channel tiles inside the image
  loop (at most 3 nested loops); row tiles inside an image and the data-gradient tiles are
  unrolled.
- Steps (double buffering): loads wait token 1 (a free slot) and the last signals 2; the first
  compute waits 2; consecutive computes on different units hand over through tokens 4, 7, 8..;
  the last compute signals 3 (or 1 without stores); stores wait 3 and the last signals 1. Slot
  registers r6-r9 (act, wgt, err, msk) toggle between the two halves with `xorr` after each step.
  Token 5 orders persistent loads and accumulator clears before their consumers; token 6
  guards a persistent accumulator (BP's dX) until its store has completed. Token 12
  (signalled by the step's first store, which waits for the tensor cores; a `sync tc` only
  where the step has one store) lets a forward conv's statistics pass run one image behind
  its tensor-core work.
- Registers: r1 image index, r2-r4 per-image DRAM bases, r5 DMA address temporary, r6-r9
  slot bases, r10-r12 temporaries (in tile loops: the tile's weight, group-mask and gate-map
  offsets; FP also uses r7/r8, whose slots it does not use), r13-r15 tile indices k, c, p.
- Memory map: every tensor is a region (activations and errors per image [row][col][channel],
  FP8; weights [k][kh][kw][c]); flatten/identity/dropout/output alias their input, an `add`'s
  inputs share its error; a tensor read by several layers gets one error part per reader and a
  merged sum. `target` (one-hot) and `act:x` (the images) are inputs of the step.
- Sparsity stays data-dependent: every op is issued dense; the units skip what the gate masks,
  group masks and skip flags say at run time. Transfers inside the image loop of a BP/WU block
  carry `gsk = 1, rimg = r1`: a skipped image moves no data. `sparse=False` compiles the dense
  program (no gating passes, no group masks), the baseline without sparsity.
- On chip, not in DRAM (`MemoryMap.on_chip`): a batch norm's forward pass also applies the
  residual add and ReLU that follow it (the intermediate activations stay in the buffer); a
  conv feeding only a batch norm accumulates the norm's statistics on its output tiles; a
  norm's backward applies the mask of the ReLU after it (the error between them stays in the
  buffer); where that chain's output is first read by a conv taking whole images, the conv
  normalises its input as it loads it (the norm has no forward block; the normalised tensor
  is stored once, for BP; r7, r8, r10 serve as extra DRAM bases / the statistics address).
  Two operands read in the same cycles are placed one word apart (bank skew).

Not expressed (listed in `CompiledProgram.notes` when they apply): the gradient of the learned
gate thresholds; channel gating for convs whose input channels do not split into G equal parts
or whose gate group of weights does not fit the weight buffer.
"""

from isa.compiler.driver import CompiledProgram, compile_graph
from isa.compiler.memmap import CompileError, MemoryMap
from isa.compiler.plan import TrainParams

__all__ = ["CompileError", "CompiledProgram", "MemoryMap", "TrainParams", "compile_graph"]
