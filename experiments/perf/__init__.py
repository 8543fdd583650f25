"""Benchmarks and profilers, and the performance lab they share.

Scripts: ``benchmark.py`` (FE2E vs MESM wall clock, FLOPs, memory),
``cpu_profile.py`` (CPU time by library, Linux perf), ``profile_ops.py``
(XLA ops), ``text_throughput.py`` (text encoders), ``preprocess_benchmark.py``
(frames per CPU second of the preprocessing).  Shared: ``compute.py``
(FLOP and memory accounting, timers, XLA:CPU compile presets),
``host_memory.py`` (the host allocator setting), ``pipeline.py`` (tf.data
rates).  The mesm_jax library never imports this package.
"""
