"""Shared pytest fixtures (kept minimal)."""

import jax
import pytest


@pytest.fixture
def fast_compile():
  """Opt-in: cheaper XLA compiles for tests that build whole models.

  Use with ``pytestmark = pytest.mark.usefixtures('fast_compile')``; the
  previous setting is restored after each test.
  """
  old = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', old)
