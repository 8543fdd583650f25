"""max_pool2: values of a dense 2x2 max-pool, gradient to the first max."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesm_jax.models.pooling import max_pool2


def numpy_pool_and_grad(x, g):
  """Plain loops: the max of each window and PyTorch's gradient rule (the
  whole upstream gradient to the first maximal entry, row-major)."""
  n, hgt, wid, c = x.shape
  h, w = hgt // 2, wid // 2
  y = np.zeros((n, h, w, c), x.dtype)
  dx = np.zeros_like(x)
  for f in range(n):
    for i in range(h):
      for j in range(w):
        for ch in range(c):
          win = [(2 * i + a, 2 * j + b) for a in (0, 1) for b in (0, 1)]
          vals = [x[f, r, s, ch] for r, s in win]
          k = int(np.argmax(vals))  # first maximum
          y[f, i, j, ch] = vals[k]
          r, s = win[k]
          dx[f, r, s, ch] += g[f, i, j, ch]
  return y, dx


@pytest.mark.parametrize('shape', [(2, 6, 4, 3), (1, 7, 5, 2), (3, 2, 2, 1)])
def test_values_and_gradient_match_numpy_with_ties(shape):
  rng = np.random.default_rng(0)
  # few distinct values: many ties inside windows
  x = rng.integers(-2, 3, size=shape).astype(np.float32)
  h, w = shape[1] // 2, shape[2] // 2
  g = rng.standard_normal((shape[0], h, w, shape[3])).astype(np.float32)
  y, vjp = jax.vjp(max_pool2, jnp.asarray(x))
  (dx,) = vjp(jnp.asarray(g))
  chex.assert_shape(y, (shape[0], h, w, shape[3]))
  chex.assert_shape(dx, shape)
  y_ref, dx_ref = numpy_pool_and_grad(x, g)
  np.testing.assert_array_equal(np.asarray(y), y_ref)
  np.testing.assert_allclose(np.asarray(dx), dx_ref, atol=1e-6)


def test_matches_flax_max_pool_without_ties():
  x = jax.random.normal(jax.random.key(1), (4, 8, 6, 5))
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')
  np.testing.assert_array_equal(np.asarray(jax.jit(max_pool2)(x)),
                                np.asarray(ref(x)))
  c = jax.random.normal(jax.random.key(2), (4, 4, 3, 5))
  loss = lambda f: lambda x: jnp.sum(jnp.tanh(f(x)) * c)
  np.testing.assert_allclose(np.asarray(jax.grad(loss(max_pool2))(x)),
                             np.asarray(jax.grad(loss(ref))(x)), atol=1e-6)


def test_bfloat16():
  x = jax.random.normal(jax.random.key(3), (2, 4, 4, 3)).astype(jnp.bfloat16)
  y, vjp = jax.vjp(max_pool2, x)
  (dx,) = vjp(jnp.ones_like(y))
  assert y.dtype == dx.dtype == jnp.bfloat16
  # every window sends exactly one unit of gradient back
  np.testing.assert_array_equal(
      np.asarray(dx, np.float32).reshape(2, 2, 2, 2, 2, 3).sum(axis=(2, 4)),
      np.ones((2, 2, 2, 3)))
