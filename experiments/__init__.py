"""Lab scripts around the mesm_jax library: training runs, FLOP counts, benchmarks."""
