"""Performance lab: FLOP and memory accounting, timers, XLA:CPU compile presets, the host allocator setting.

Used by experiments/benchmark.py, flops.py, profile_ops.py and cpu_profile.py; the mesm_jax library never imports it.
"""
