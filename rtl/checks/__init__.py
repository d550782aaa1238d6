"""Cross-checks of the RTL against `simulator.numerics`: vector benches and their runner."""
