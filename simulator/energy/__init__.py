"""Energy of simulated steps from event counts and the configuration's energy table."""

from simulator.energy.model import COMPONENTS, EnergyBreakdown, energy, tflops_per_w

__all__ = ["COMPONENTS", "EnergyBreakdown", "energy", "tflops_per_w"]
