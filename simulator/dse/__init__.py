"""Design-space exploration of stochastic rounding units (`fp8sim sweep sru`)."""
