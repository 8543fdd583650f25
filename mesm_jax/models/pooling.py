"""2x2 stride-2 max-pooling with a cheap, PyTorch-like gradient.

Axis letters:
  N : frames;  H, W : rows and columns;  C : channels
  h, w : output rows and columns (``H // 2``, ``W // 2``)

``max_pool2`` computes the same values as ``flax.linen.max_pool(x, (2, 2),
strides=(2, 2))`` (odd trailing rows and columns are dropped).  Its gradient
goes, per window and channel, to the *first* maximal entry in row-major
window order, which is what PyTorch's ``max_pool2d`` does.  Autodiff of
``reduce_window`` would give the same numbers (up to ties), but XLA:CPU
lowers its gradient to a variadic reduce-window over four index arrays: 6-31
ms per pool at the stem's sizes, against 0.7-1.1 ms for this gradient, one
elementwise pass (``docs/benchmarks.md``, run 4).
"""

import jax
import jax.numpy as jnp


def _windows(x: jax.Array) -> jax.Array:
  """``[N,H,W,C]`` -> ``[N,h,2,w,2,C]`` (odd trailing rows/columns dropped)."""
  n, hgt, wid, c = x.shape
  h, w = hgt // 2, wid // 2
  return x[:, :2 * h, :2 * w].reshape(n, h, 2, w, 2, c)


@jax.custom_vjp
def max_pool2(x: jax.Array) -> jax.Array:
  """``[N,H,W,C]`` -> ``[N,h,w,C]``: max over 2x2 windows, stride 2."""
  return _windows(x).max(axis=(2, 4))


def _first_argmax(win: jax.Array, y: jax.Array) -> jax.Array:
  """``[N,h,w,C]`` int8: 0-3, the first entry of each window equal to ``y``."""
  first = jnp.where(win[:, :, 1, :, 0] == y, 2, 3)
  first = jnp.where(win[:, :, 0, :, 1] == y, 1, first)
  return jnp.where(win[:, :, 0, :, 0] == y, 0, first).astype(jnp.int8)


def _max_pool2_fwd(x):
  y = max_pool2(x)
  return y, (x, y)


def _max_pool2_bwd(res, g):
  x, y = res
  first = _first_argmax(_windows(x), y)[:, :, None, :, None]
  dy = jnp.arange(2, dtype=jnp.int8)[:, None, None, None]
  dx = jnp.arange(2, dtype=jnp.int8)[None, None, :, None]
  slot = dy * 2 + dx                                          # [2,1,2,1]
  dwin = jnp.where(first == slot, g[:, :, None, :, None], 0).astype(x.dtype)
  n, h, _, w, _, c = dwin.shape
  dx_ = dwin.reshape(n, 2 * h, 2 * w, c)
  dx_ = jnp.pad(dx_, ((0, 0), (0, x.shape[1] - 2 * h),
                      (0, x.shape[2] - 2 * w), (0, 0)))
  return (dx_,)


max_pool2.defvjp(_max_pool2_fwd, _max_pool2_bwd)
