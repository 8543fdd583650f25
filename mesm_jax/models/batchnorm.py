"""BatchNorm whose statistics come from real entries only.

Axis letters:
  ... : leading axes of the entries (frames, rows, columns or slots)
  c   : channels (the last axis)

Every entry carries a weight (1 = real, 0 = padding): the product of the clip
mask, the frame (chunk) mask and, inside a sparse stage, the active-position
mask.  Padded entries are normalised with the same statistics as the real
ones but never contribute to them, so padding changes no real output.

PyTorch semantics: ``eps = 1e-5``; training normalises with the biased
variance of the batch; the running statistics move by ``momentum = 0.1``
towards the batch mean and the *unbiased* batch variance; evaluation uses the
running statistics.  With ``axis_name`` set, sums and counts are ``psum``-ed
over that named axis (pmap, shard_map or vmap), so the statistics are those of
the global batch and the running statistics stay identical on every device.
"""

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp


def _psum(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def masked_moments(
    x: jax.Array, weights: jax.Array, axis_name: Optional[str] = None
) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """Weighted mean, biased variance (both ``[c]``) and total weight.

  Args:
    x: ``[..., c]`` entries.
    weights: ``[...]`` weights (broadcastable to ``x.shape[:-1]``).
    axis_name: optional named axis to sum over as well.
  """
  w = jnp.broadcast_to(weights, x.shape[:-1]).astype(jnp.float32)[..., None]
  x = jnp.where(w > 0, x.astype(jnp.float32), 0.0)  # padding may hold anything
  axes = tuple(range(x.ndim - 1))
  count = _psum(jnp.sum(w), axis_name)
  safe = jnp.maximum(count, 1.0)
  mean = _psum(jnp.sum(w * x, axes), axis_name) / safe
  dev = jnp.where(w > 0, x - mean, 0.0)
  var = _psum(jnp.sum(w * dev * dev, axes), axis_name) / safe
  return mean, var, count


class MaskedBatchNorm(nn.Module):
  """BatchNorm over the channel axis with per-entry weights (see module doc).

  Attributes:
    momentum: PyTorch-style momentum of the running statistics.
    epsilon: added to the variance.
    axis_name: named axis to share statistics over (``'batch'`` under pmap).
    dtype: dtype of the output (statistics are always float32).
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, weights: jax.Array,
               train: bool) -> jax.Array:
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (c,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (c,), jnp.float32)
    if train:
      axis = None if self.is_initializing() else self.axis_name
      mean, var, count = masked_moments(x, weights, axis)
      if not self.is_initializing():
        self._update(ra_mean, ra_var, mean, var, count)
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + self.epsilon)
    return (y * scale + bias).astype(self.dtype)

  def _update(self, ra_mean, ra_var, mean, var, count) -> None:
    """Running stats move towards the batch (unbiased var); none if empty."""
    unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
    m, has = self.momentum, count > 0
    ra_mean.value = jnp.where(has, (1 - m) * ra_mean.value + m * mean,
                              ra_mean.value)
    ra_var.value = jnp.where(has, (1 - m) * ra_var.value + m * unbiased,
                             ra_var.value)
