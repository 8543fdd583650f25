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

Ties are broken towards the lower position index (the order of
``lax.top_k``, a partial sort), so the mask is a deterministic function of the
probabilities.
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


def _top_positions(
    probs: jax.Array, valid: jax.Array, k: int) -> Tuple[jax.Array, jax.Array]:
  """The ``k`` largest valid probabilities of each frame and their positions.

  Descending, ties towards the lower position (``lax.top_k``'s order);
  invalid positions have the key ``-inf`` and come last.  A partial sort:
  on XLA:CPU the nucleus mask took 4-6x less time than with a stable
  ``argsort`` of the whole frame (docs/benchmarks.md, run 12).
  """
  key = jnp.where(valid, probs, -jnp.inf)
  return jax.lax.top_k(key, k)


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
    The kept slots are a prefix of the list; slots past the nucleus have
    ``keep == False`` (their index is arbitrary).
  """
  n = probs.shape[-1]
  if valid is None:
    valid = jnp.ones(probs.shape, bool)
  k = nucleus_capacity(n, top_p) if capacity is None else capacity
  _, order = _top_positions(probs, valid, k)
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

  Back from the sorted list to positions without a second sort or a
  scatter: the nucleus is a prefix of the descending order, so a position
  is in it exactly when it ranks at or before the last kept one, i.e. when
  its probability is larger than that one's, or equal with a position no
  larger (the order breaks ties towards the lower position).
  """
  probs = jax.lax.stop_gradient(jnp.asarray(probs))
  n = probs.shape[-1]
  if valid is None:
    valid = jnp.ones(probs.shape, bool)
  valid = jnp.asarray(valid, bool)
  if top_p >= 1:
    return valid
  order, keep = nucleus_topk(probs, top_p, valid)
  count = jnp.sum(keep, axis=-1, keepdims=True)
  last = jnp.maximum(count - 1, 0)
  last_pos = jnp.take_along_axis(order, last, axis=-1)
  last_prob = jnp.take_along_axis(probs, last_pos, axis=-1)
  pos = jnp.arange(n, dtype=order.dtype)
  ranks_before = (probs > last_prob) | ((probs == last_prob) & (pos <= last_pos))
  return valid & (count > 0) & ranks_before
