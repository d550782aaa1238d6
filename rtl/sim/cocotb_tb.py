"""cocotb test run inside the simulator: clock the self-driving harness until it is done.

The harness (rtl/sim/harness.py) reads its vectors with $readmemh and writes every output with
$fwrite, so Python only starts the clock and waits; the comparison happens afterwards in numpy.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge


@cocotb.test()
async def run_vectors(dut) -> None:
    # The C-implemented clock keeps Python out of the per-cycle path.
    Clock(dut.clk, 2, unit="ns", impl="gpi").start(start_high=False)
    await RisingEdge(dut.done)
