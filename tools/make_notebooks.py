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
        "r_values = [2, 4, 8] if tiny else list(range(1, 13))\n"
        "cfg = SweepConfig.model_validate({\n"
        "    'name': 'notebook',\n"
        "    'numeric_samples': 20_000 if tiny else 200_000,\n"
        "    'nist_bits': 10_000 if tiny else 1 << 15,\n"
        "    'training': {'enabled': False},\n"
        "    'grid': [\n"
        "        {'rounding': ['sr', 'sr_half', 'sr_corrected'], 'r': r_values,\n"
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
        "The narrow-PRNG points: a 3-bit LFSR fanned out to 8 random bits, that LFSR "
        "alternating with its inverse, xorshift32, and bits taken from the neighbouring "
        "lanes of the rounded tensor itself."
    ),
    new_code_cell(
        "rows = [flatten(r) for r in outcome.results if r['point']['r'] == 8\n"
        "        and r['point']['rounding'] == 'sr']\n"
        "lines = ['| design | bias (ULP) | analytic (ULP) | basis | lag-1 autocorr | NIST passed |',\n"
        "         '|---|---|---|---|---|---|']\n"
        "for f in rows:\n"
        "    lines.append(f\"| {f['label']} | {f['numeric.bias_ulp']:+.4f} | \"\n"
        "                 f\"{f['numeric.bias_expected_ulp']:+.4f} | {f['numeric.bias_basis']} | \"\n"
        "                 f\"{f['numeric.autocorr_lag1']:+.3f} | {f['numeric.nist_passed']} |\")\n"
        "display(Markdown('\\n'.join(lines)))\n"
        "assert all(f['numeric.bias_matches_analytic'] is not False for f in map(flatten, outcome.results))"
    ),
]


def main() -> None:
    nb = new_notebook(cells=SRU_DSE, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    path = Path(__file__).resolve().parent.parent / "notebooks" / "sru_dse.ipynb"
    nbformat.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
