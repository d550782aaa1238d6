"""The `fp8sim` command line. Each subcommand group lives in its own module and is added here."""

import click

from simulator import __version__
from simulator.cli.isa_cmd import asm, compile_cmd, disasm
from simulator.cli.numerics_cmd import numerics
from simulator.cli.rtl_cmd import rtl
from simulator.cli.run_cmd import report_cmd, run_cmd
from simulator.cli.sweep_cmd import sweep
from simulator.cli.trace_cmd import trace
from simulator.cli.verify_cmd import verify_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fp8sim")
def main() -> None:
    """fp8sim: simulate sparse FP8 CNN training hardware, bit-exact and cycle-level."""


main.add_command(numerics)
main.add_command(sweep)
main.add_command(asm)
main.add_command(disasm)
main.add_command(compile_cmd)
main.add_command(trace)
main.add_command(run_cmd)
main.add_command(report_cmd)
main.add_command(rtl)
main.add_command(verify_cmd)
