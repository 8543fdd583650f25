"""Nucleus sampling over the positions of a feature map (MESM Eq. 3).

Axis letters used in this module:
  ... : any leading batch axes (clips, frames)
  n   : the positions of one frame's feature map (H * W, flattened)
  k   : the static capacity of a frame's nucleus, ``nucleus_capacity(n, p)``

The rule of the original: sort one frame's probabilities in descending order
and keep every position whose cumulative sum is below ``top_p``, plus the first
position at which the cumulative sum reaches ``top_p``.  Equivalently: the
position of sorted rank ``r`` is kept when the sum of the probabilities ranked
before it (the exclusive cumulative sum) is below ``top_p``.

Static shapes: the ``r`` largest of ``n`` probabilities that sum to one add up
to at least ``r / n``, so once ``r >= top_p * n`` the cumulative sum has
reached ``top_p``.  A nucleus therefore never holds more than
``ceil(top_p * n)`` positions, and a buffer of that capacity loses nothing.
In float32 the cumulative sum can fall a rounding error short of ``top_p``
where exact arithmetic reaches it; the rank limit ``r < capacity`` keeps the
bound exact in that case, and changes nothing anywhere else.

Ties are broken towards the lower position index (a stable sort), so the
mask is a deterministic function of the probabilities.
"""

import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp


def nucleus_capacity(n: int, top_p: float) -> int:
  """Largest possible nucleus of ``n`` positions at ``top_p``: ceil(p * n).

  The ``1e-9`` guard keeps ``0.7 * 10 = 7.000000000000001`` at 7.
  """
  if n <= 0:
    raise ValueError(f'a feature map needs at least one position, got n={n}')
  if top_p <= 0:
    raise ValueError(f'top_p must be positive, got {top_p}')
  if top_p >= 1:
    return n
  return max(1, min(n, math.ceil(top_p * n - 1e-9)))


def _sorted_order(probs: jax.Array, valid: jax.Array) -> jax.Array:
  """Positions sorted by descending probability, valid ones first, stable."""
  key = jnp.where(valid, probs, -jnp.inf)
  return jnp.argsort(-key, axis=-1, stable=True)


def nucleus_topk(
    probs: jax.Array,
    top_p: float,
    valid: Optional[jax.Array] = None,
    capacity: Optional[int] = None,
) -> Tuple[jax.Array, jax.Array]:
  """The nucleus as a fixed-capacity list of positions.

  Args:
    probs: ``[..., n]`` probabilities over the positions of one frame
      (typically a softmax over the valid positions).
    top_p: the nucleus threshold, a Python float (static).
    valid: optional ``[..., n]`` bool, positions that may be chosen.
    capacity: the list length ``k``; defaults to ``nucleus_capacity(n, p)``.

  Returns:
    ``(index, keep)``: ``[..., k]`` int32 positions in descending probability
    order and ``[..., k]`` bool, whether each slot holds a kept position.
    Slots past the nucleus have ``keep == False`` (their index is arbitrary).
  """
  n = probs.shape[-1]
  if valid is None:
    valid = jnp.ones(probs.shape, bool)
  k = nucleus_capacity(n, top_p) if capacity is None else capacity
  order = _sorted_order(probs, valid)[..., :k]
  sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
  sorted_valid = jnp.take_along_axis(valid, order, axis=-1)
  if top_p >= 1:
    keep = sorted_valid
  else:
    exclusive = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep = (exclusive < top_p) & sorted_valid
  return order.astype(jnp.int32), keep


def nucleus_mask(
    probs: jax.Array, top_p: float, valid: Optional[jax.Array] = None
) -> jax.Array:
  """Boolean mask of the nucleus, same shape as ``probs`` (last axis: n).

  ``top_p >= 1`` keeps every valid position.  No gradient flows through a
  mask; use the probabilities themselves where a gradient is wanted.
  """
  probs = jax.lax.stop_gradient(jnp.asarray(probs))
  n = probs.shape[-1]
  if valid is None:
    valid = jnp.ones(probs.shape, bool)
  valid = jnp.asarray(valid, bool)
  if top_p >= 1:
    return valid
  order, keep = nucleus_topk(probs, top_p, valid, capacity=n)
  k = nucleus_capacity(n, top_p)
  rank = jnp.arange(n) < k
  keep = keep & rank
  # Scatter the sorted decisions back: the rank of each position is the
  # inverse permutation of ``order``.
  inverse = jnp.argsort(order, axis=-1)
  return jnp.take_along_axis(keep, inverse, axis=-1)
