"""JAX settings for a block of test code, restored afterwards.

``with compile_settings.fast():`` cheaper XLA compiles (tests and module
fixtures that build whole models); ``jax_settings(**flags)`` any others.
"""

import contextlib

import jax


def _read(name: str):
  try:
    return jax.config.read(name)
  except AttributeError:  # flags with their own context manager
    return getattr(jax.config, name)


@contextlib.contextmanager
def jax_settings(**settings):
  old = {name: _read(name) for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  try:
    yield
  finally:
    for name, value in old.items():
      jax.config.update(name, value)


def fast():
  return jax_settings(jax_disable_most_optimizations=True)
