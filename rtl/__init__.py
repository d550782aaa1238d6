"""Amaranth RTL of the accelerator's arithmetic and control blocks, and their cocotb benches.

Not written yet (issue "RTL: Amaranth arithmetic blocks"); nothing here is usable today.
"""
