"""Amaranth RTL of the accelerator's arithmetic and decision blocks, and their cross-checks.

Blocks: `multiplier` (exact FP8 x FP8), `dot_product` (dp_width products, aligned tree, one
rounding into FP16), `sru` (FP16/FP32 -> FP8, rne / sr / sr_half / sr_corrected), `prng`
(LFSRs, stream bits), `sru_pair` (SRU fed by its PRNG), `sparsity` (channel-gate comparator,
group-norm zero detector). `checks` compares them with `simulator.numerics` under Icarus and
Verilator through cocotb (`sim`); `stats` counts Yosys cells. See docs/rtl.md.
"""
