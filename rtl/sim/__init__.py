"""Running RTL under Icarus or Verilator through cocotb, with vectors kept out of Python's loop."""
