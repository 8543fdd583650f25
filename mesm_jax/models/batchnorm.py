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

Training mode runs ``normalize_train``: the normalisation (and the ReLU that
follows every BatchNorm of the CNNs, ``relu=True``) with a hand-written
gradient, on the dense maps and on the sparse stages' compact rows alike.
Its backward pass reads the activations for two channel sums and once more
for the input gradient; autodiff of the same formula was slower on CPU,
where these passes are memory-bound: on the largest maps (the stem's)
forward + backward took 5.7 ms with autodiff, 3.4 ms with this gradient
(``docs/benchmarks.md``, run 6).  It also plans less scratch: MESM's feature
extraction on a MOSEI clip 1331 instead of 1412 MiB with it on the rows.
"""

import functools
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def normalize_train(
    x: jax.Array, weights: jax.Array, scale: jax.Array, bias: jax.Array,
    epsilon: float, relu: bool, axis_name: Optional[str],
) -> Tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Training-mode BatchNorm (optionally + ReLU) with the batch's statistics.

  Args:
    x: ``[..., c]`` entries; weights: ``[...]`` (broadcastable) entry weights.
    scale, bias: ``[c]`` affine parameters (float32).
    epsilon: added to the variance; relu: apply ``max(0, .)`` after.
    axis_name: optional named axis the statistics are summed over.

  Returns:
    ``(y, mean, var, count)``: ``y`` like ``x`` (its dtype), the weighted
    mean and biased variance ``[c]`` and the total weight.  Only ``y`` carries
    a gradient (the statistics feed the running averages, nothing else; the
    weights are masks and get none).

  The gradient, with ``xhat = (x - mean) * rstd``, ``g`` the cotangent of
  ``y`` (zero where the ReLU cut), ``W`` the total weight and sums over every
  entry (all of them are normalised with the batch statistics, the weights
  only decide who contributes to them), is
  ``dx_i = scale * rstd * (g_i - w_i / W * (sum g + xhat_i * sum g * xhat))``,
  ``dscale = sum g * xhat``, ``dbias = sum g``.
  """
  return _normalize_fwd(x, weights, scale, bias, epsilon, relu, axis_name)[0]


def _affine(x, mean, rstd, scale, bias, relu):
  """``(x - mean) * rstd * scale + bias`` in float32, then the ReLU."""
  y = (x.astype(jnp.float32) - mean) * (rstd * scale) + bias
  return jnp.maximum(y, 0.0) if relu else y


def _normalize_fwd(x, weights, scale, bias, epsilon, relu, axis_name):
  mean, var, count = masked_moments(x, weights, axis_name)
  rstd = jax.lax.rsqrt(var + epsilon)
  y = _affine(x, mean, rstd, scale, bias, relu).astype(x.dtype)
  # The ReLU's gradient mask is read off the output itself: recomputing it
  # in the backward pass can cut different entries at the kink (XLA fuses
  # and rounds the two expressions differently).
  return (y, mean, var, count), (x, y if relu else None, weights, scale,
                                 mean, rstd, count)


def _normalize_bwd(epsilon, relu, axis_name, res, cts):
  del epsilon
  x, y, weights, scale, mean, rstd, count = res
  g = cts[0].astype(jnp.float32)
  if relu:
    g = jnp.where(y > 0, g, 0.0)
  xhat = (x.astype(jnp.float32) - mean) * rstd
  axes = tuple(range(x.ndim - 1))
  dbias = jnp.sum(g, axes)
  dscale = jnp.sum(g * xhat, axes)
  w = jnp.broadcast_to(weights, x.shape[:-1]).astype(jnp.float32)[..., None]
  safe = jnp.maximum(count, 1.0)
  mean_g = _psum(dbias, axis_name) / safe
  mean_gx = _psum(dscale, axis_name) / safe
  dx = (scale * rstd) * (g - w * (mean_g + xhat * mean_gx))
  if jnp.issubdtype(weights.dtype, jnp.floating):
    d_weights = jnp.zeros_like(weights)
  else:
    d_weights = np.zeros(weights.shape, jax.dtypes.float0)
  return dx.astype(x.dtype), d_weights, dscale, dbias


normalize_train.defvjp(_normalize_fwd, _normalize_bwd)


class MaskedBatchNorm(nn.Module):
  """BatchNorm over the channel axis with per-entry weights (see module doc).

  Attributes:
    momentum: PyTorch-style momentum of the running statistics.
    epsilon: added to the variance.
    axis_name: named axis to share statistics over (``'batch'`` under pmap).
    dtype: dtype of the output (statistics are always float32).
    relu: apply a ReLU to the output.
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  relu: bool = False

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
      y, mean, var, count = normalize_train(
          x, weights, scale, bias, self.epsilon, self.relu, axis)
      if not self.is_initializing():
        stats = jax.lax.stop_gradient((mean, var, count))
        self._update(ra_mean, ra_var, *stats)
      return y.astype(self.dtype)
    mean, var = ra_mean.value, ra_var.value
    y = _affine(x, mean, jax.lax.rsqrt(var + self.epsilon), scale, bias,
                self.relu)
    return y.astype(self.dtype)

  def _update(self, ra_mean, ra_var, mean, var, count) -> None:
    """Running stats move towards the batch (unbiased var); none if empty."""
    unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
    m, has = self.momentum, count > 0
    ra_mean.value = jnp.where(has, (1 - m) * ra_mean.value + m * mean,
                              ra_mean.value)
    ra_var.value = jnp.where(has, (1 - m) * ra_var.value + m * unbiased,
                             ra_var.value)
