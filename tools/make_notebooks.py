"""Writes the notebooks in notebooks/ from the cell sources below (the notebooks are generated
so their code is reviewed as Python; run `python tools/make_notebooks.py` after editing)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SRU_DSE = [
    new_markdown_cell(
        "# Stochastic rounding units: how small can the SRU and its PRNG be?\n\n"
        "A small sweep with `simulator.dse` over rounding variants, random bits `r` and random "
        "sources. Each point's bias (mean rounding error, in target ULPs) is measured and "
        "set against the value its definition predicts (docs/numerics.md). "
        "The command-line equivalent is `fp8sim sweep sru CONFIG.yaml -o DIR`.\n\n"
        "Set `FP8SIM_NOTEBOOK_BUDGET=tiny` for a quick run; the test suite does."
    ),
    new_code_cell(
        "import json, os, tempfile\n"
        "from pathlib import Path\n"
        "from IPython.display import Image, Markdown, display\n"
        "from simulator.dse.config import SweepConfig\n"
        "from simulator.dse.runner import run_sweep\n"
        "from simulator.dse.report import write_report, flatten\n\n"
        "tiny = os.environ.get('FP8SIM_NOTEBOOK_BUDGET') == 'tiny'\n"
        "r_values = [2, 8] if tiny else list(range(1, 13))\n"
        "cfg = SweepConfig.model_validate({\n"
        "    'name': 'notebook',\n"
        "    'numeric_samples': 20_000 if tiny else 200_000,\n"
        "    'nist_bits': 10_000 if tiny else 1 << 15,\n"
        "    'training': {'enabled': False},\n"
        "    'grid': [\n"
        "        {'rounding': ['sr'] if tiny else ['sr', 'sr_half', 'sr_corrected'],\n"
        "         'r': r_values,\n"
        "         'source': [{'kind': 'uniform'}, {'kind': 'lfsr', 'width': 16}]},\n"
        "        {'rounding': ['sr'], 'r': [8],\n"
        "         'source': [{'kind': 'lfsr', 'width': 3},\n"
        "                    {'kind': 'lfsr', 'width': 3, 'combine': 'alternate'},\n"
        "                    {'kind': 'xorshift32'}, {'kind': 'network', 'tensor': 'self'}]},\n"
        "    ],\n"
        "})\n"
        "print(len(cfg.points()), 'points')"
    ),
    new_code_cell(
        "out = Path(tempfile.mkdtemp(prefix='sru_dse_'))\n"
        "outcome = run_sweep(cfg, out, workers=1 if tiny else None)\n"
        "summary = write_report(cfg, outcome.results, [], out)\n"
        "print(outcome.computed, 'points computed; results in', out)"
    ),
    new_markdown_cell(
        "Measured bias (markers, with two standard errors) and the analytic bias (lines). "
        "`sr` with an ideal source sits near -2^-(r+1) ULP. `sr_half` and `sr_corrected` "
        "remove that bias."
    ),
    new_code_cell("display(Image(filename=str(out / 'bias_vs_r.png')))"),
    new_markdown_cell(
        "Hardware cost: gate equivalents of the SRU plus its random source, from Yosys "
        "synthesis of the RTL in `rtl/`. Without training in this notebook, the Pareto front "
        "trades cost against the size of the bias; `fp8sim sweep sru` with training enabled "
        "trades it against accuracy."
    ),
    new_code_cell(
        "pareto = out / 'pareto.png'\n"
        "display(Image(filename=str(pareto))) if pareto.exists() else print('no hardware cost')"
    ),
    new_markdown_cell(
        "The narrow-PRNG points: a 3-bit LFSR fanned out to 8 random bits, that LFSR "
        "alternating with its inverse, xorshift32, and bits taken from the neighbouring "
        "lanes of the rounded tensor itself."
    ),
    new_code_cell(
        "rows = [flatten(r) for r in outcome.results if r['point']['r'] == 8\n"
        "        and r['point']['rounding'] == 'sr']\n"
        "lines = ['| design | bias (ULP) | analytic (ULP) | basis | lag-1 autocorr '\n"
        "         '| NIST passed |', '|---|---|---|---|---|---|']\n"
        "for f in rows:\n"
        "    lines.append(f\"| {f['label']} | {f['numeric.bias_ulp']:+.4f} | \"\n"
        "                 f\"{f['numeric.bias_expected_ulp']:+.4f} | \"\n"
        "                 f\"{f['numeric.bias_basis']} | \"\n"
        "                 f\"{f['numeric.autocorr_lag1']:+.3f} | \"\n"
        "                 f\"{f['numeric.nist_passed']} |\")\n"
        "display(Markdown('\\n'.join(lines)))\n"
        "flat = [flatten(r) for r in outcome.results]\n"
        "assert all(f['numeric.bias_matches_analytic'] is not False for f in flat)"
    ),
]


SPEEDUP_ENERGY = [
    new_markdown_cell(
        "# Speedup and energy of sparse FP8 training on the modelled chip\n\n"
        "One training step of a workload, compiled for `ref28`, simulated cycle by cycle dense, "
        "with each sparsity technique alone and with all of them, on the same masks; then its "
        "energy from the configuration's energy table. The command-line equivalent is "
        "`fp8sim report --trace NAME -o DIR` (`make report` for the default workload); "
        "docs/simulator.md explains the model.\n\n"
        "With `FP8SIM_NOTEBOOK_BUDGET=tiny` (the test suite) the workload is `vgg7-tiny` "
        "(VGG-7, batch 2); otherwise the calibration workload `resnet20-cal` (ResNet-20, "
        "batch 128, masks with the chip's 7.3x FLOPs reduction)."
    ),
    new_code_cell(
        "import os, tempfile\n"
        "from pathlib import Path\n"
        "from IPython.display import Image, Markdown, display\n"
        "from simulator.config import load_config\n"
        "from simulator.run import load_workload, run_workload\n"
        "from simulator.report import write_report\n"
        "from simulator.report.tables import headline\n\n"
        "tiny = os.environ.get('FP8SIM_NOTEBOOK_BUDGET') == 'tiny'\n"
        "cfg = load_config('ref28')\n"
        "w = load_workload('vgg7-tiny' if tiny else 'resnet20-cal')\n"
        "print(w.trace.graph.model_name, 'batch', w.trace.batch, 'densities', w.masks.densities())"
    ),
    new_code_cell(
        "res = run_workload(w, cfg)\n"
        "s = res.summary\n"
        "print({k: round(v, 3) for k, v in res.wall_seconds.items()}, 'seconds of wall time')"
    ),
    new_markdown_cell(
        "The headline: cycles (chip clock), speedup over dense, energy per step (uJ, with and "
        "without DRAM) at the default operating point, and tensor-core utilisation (useful "
        "MACs over peak MACs in the step's cycles)."
    ),
    new_code_cell(
        "rows = headline(s)\n"
        "lines = ['| mode | cycles | speedup | energy uJ | on-chip uJ | utilisation |',\n"
        "         '|---|---|---|---|---|---|']\n"
        "for r in rows:\n"
        "    lines.append(f\"| {r['mode']} | {r['cycles']:,} | {r['speedup_x']:.2f}x | \"\n"
        "                 f\"{r['energy_uJ']:.1f} | {r['energy_on_chip_uJ']:.1f} | \"\n"
        "                 f\"{r['tc_utilization']:.3f} |\")\n"
        "display(Markdown('\\n'.join(lines)))\n"
        "e = s['tflops_per_w']\n"
        "red = s['flops_reduction_executed']['all']\n"
        "print(f\"trace FLOPs reduction {s['flops_reduction']:.2f}x, \"\n"
        '      f"executed MAC reduction {red:.2f}x; "\n'
        "      f\"efficiency at {e['operating_point']}: \"\n"
        "      f\"{e['dense_equivalent']:.2f} TFLOPS/W dense-equivalent, \"\n"
        "      f\"{e['actual']:.2f} actual\")\n"
        "assert s['speedup']['all'] > 1"
    ),
    new_markdown_cell(
        "Where the time goes: cycles each unit was busy, stalled (on a dependency token, the "
        "DRAM channel, a full queue or a barrier) and idle, in mode `all`."
    ),
    new_code_cell(
        "u = s['units_report']['all']\n"
        "for unit in ('ld', 'st', 'tc', 'sfu', 'cgu'):\n"
        "    stalled = sum(u['stall'][unit].values())\n"
        "    print(f\"{unit:4} busy {u['busy'][unit]:>12,}  stalled {stalled:>12,}\"\n"
        "          f\"  idle {u['idle'][unit]:>12,}\")"
    ),
    new_markdown_cell(
        "Across operating points. The DRAM runs on its own clock (`dma.dram_clock: memory` in "
        "ref28: 6.4 GB/s and 250 ns whatever the core clock), so a slower point sees more bytes "
        "per core cycle; `run_workload` simulates mode `all` and `dense` again at each point "
        "with that point's channel. Efficiency is dense-equivalent TFLOPS/W on chip (2 FLOPs "
        "per dense MAC over on-chip energy)."
    ),
    new_code_cell(
        "lines = ['| point | DRAM B/cycle | cycles dense | cycles all | speedup | TFLOPS/W |',\n"
        "         '|---|---|---|---|---|---|']\n"
        "for p in s['operating_points']:\n"
        "    lines.append(f\"| {p['name']} | {p['dram_bytes_per_cycle']} | \"\n"
        "                 f\"{p['cycles_dense']:,} | {p['cycles']:,} | {p['speedup']:.2f}x | \"\n"
        "                 f\"{p['tflops_per_w_dense_equivalent']:.2f} |\")\n"
        "display(Markdown('\\n'.join(lines)))\n"
        "pts = sorted(s['operating_points'], key=lambda p: p['frequency_mhz'])\n"
        "assert pts[0]['cycles_dense'] <= pts[-1]['cycles_dense']  # more bytes per cycle"
    ),
    new_markdown_cell(
        "The report's figures (data as CSV/JSON beside them in the report directory)."
    ),
    new_code_cell(
        "out = Path(tempfile.mkdtemp(prefix='fp8sim_report_')) / 'report'\n"
        "write_report(s, cfg, out)\n"
        "for name in ('energy_by_component.png', 'roofline.png', 'timeline.png', "
        "'efficiency.png'):\n"
        "    display(Image(filename=str(out / name)))"
    ),
]


def main() -> None:
    nb = new_notebook(
        cells=SRU_DSE,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path = Path(__file__).resolve().parent.parent / "notebooks" / "sru_dse.ipynb"
    nbformat.write(nb, path)
    print(f"wrote {path}")
    write_speedup_energy()


def write_speedup_energy() -> None:
    """notebooks/speedup_energy.ipynb: the simulator's headline, units and report figures."""
    nb = new_notebook(
        cells=SPEEDUP_ENERGY,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path = Path(__file__).resolve().parent.parent / "notebooks" / "speedup_energy.ipynb"
    nbformat.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
