"""`python -m simulator.cli` runs the `fp8sim` command."""

from simulator.cli import main

main()
