"""Sparse VGG stages of MESM with static shapes: ``masked`` and ``gathered``.

Axis letters:
  N : frames (clips x frames, or clips x spectrogram chunks), flattened
  H, W : rows and columns of a frame's feature map; n = H * W positions
  K : the static capacity of a stage, ``nucleus_capacity(n, top_p)``
  C, O : input and output channels
  9 : the 3x3 neighbourhood of a position, (dy, dx) in row-major order

A sparse stage is a submanifold VGG block: a 3x3 convolution without bias
whose output exists only at active positions and whose input from inactive
neighbours is zero, BatchNorm over active positions only, ReLU, twice; then a
2x2 max-pool whose output is active where any of its four inputs is active.
Its input and output are dense maps with zeros where inactive, plus the
active masks.

Both implementations have one signature,

    stage(x, active, frame_weight, kernels, norm, capacity) -> (y, active_out)

with ``x [N,H,W,C]``, ``active [N,H,W]`` bool, ``frame_weight [N]`` (real
frame = 1), ``kernels`` a sequence of ``[3,3,C_in,O]`` kernels and
``norm(i, h, w)`` the i-th BatchNorm + ReLU applied to entries ``h [...,O]``
with weights ``w [...]``.

* ``masked_stage``: dense convolutions, masked after every step.  The
  reference; cost independent of ``top_p``.
* ``gathered_stage``: the active positions of each frame are gathered into a
  buffer ``[N,K,C]`` (held flat, ``[N*K,C]``); each slot's neighbourhood is
  read from that buffer through a neighbour index table ``[N,K,9]`` (missing
  neighbours read a shared zero row) and one matmul with the ``[9*C, O]``
  kernel computes the convolution.  Every gather is one 2-D row gather over
  all frames (``jnp.take``).  The neighbourhood gather has a custom
  gradient that is again a gather (then a sum over the 9 offsets) instead of
  XLA's scatter-add; the convolution's kernel gradient and the rest are
  plain autodiff.
  Work scales with ``K``, i.e. with ``top_p``.  Only the pooling goes
  through the dense map.

Positions beyond the capacity would be dropped by ``gathered_stage``; a
nucleus never has more than ``K`` positions (the bound is tested), and the
pooled mask of one stage only enters the next stage through a new nucleus.
"""

import functools
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mesm_jax.models import conv as conv_lib
from mesm_jax.models.pooling import max_pool2

Norm = Callable[[int, jax.Array, jax.Array], jax.Array]


def conv3x3(x: jax.Array, kernel: jax.Array, chunk: int = -1) -> jax.Array:
  """Dense 3x3 convolution, zero padding 1, no bias: [N,H,W,C] -> [N,H,W,O].

  ``chunk``: kernel-gradient chunks of at most this many frames (``conv.conv2d``).
  """
  return conv_lib.conv2d(x, kernel.astype(x.dtype), chunk)


def masked_max_pool(
    x: jax.Array, active: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """2x2 stride-2 max over active inputs; output active if any input is.

  Inactive outputs are zero.  Odd trailing rows/columns are dropped (floor),
  as a dense 2x2 max-pool does.
  """
  n, h, w = active.shape
  h2, w2 = h // 2, w // 2
  low = jnp.finfo(x.dtype).min
  y = max_pool2(jnp.where(active[..., None], x, low))
  a = active[:, :2 * h2, :2 * w2].reshape(n, h2, 2, w2, 2).any(axis=(2, 4))
  return jnp.where(a[..., None], y, 0).astype(x.dtype), a


def masked_stage(
    x: jax.Array, active: jax.Array, frame_weight: jax.Array,
    kernels: Sequence[jax.Array], norm: Norm, capacity: Optional[int] = None,
    conv_chunk: int = -1,
) -> Tuple[jax.Array, jax.Array]:
  """Sparse stage as dense convolutions with the mask applied (reference).

  ``conv_chunk``: frames per convolution, as in ``conv.conv2d``.
  """
  del capacity  # the dense maps hold every position
  keep = active[..., None].astype(x.dtype)
  weights = frame_weight[:, None, None] * active
  h = x * keep
  for i, kernel in enumerate(kernels):
    h = conv3x3(h, kernel, conv_chunk) * keep
    h = norm(i, h, weights) * keep
  return masked_max_pool(h, active)


@functools.lru_cache(maxsize=None)
def neighbour_table(h: int, w: int) -> np.ndarray:
  """``[n, 9]`` flat position of each 3x3 neighbour; ``n`` where off the map."""
  ys, xs = np.divmod(np.arange(h * w), w)
  cols = []
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      ny, nx = ys + dy, xs + dx
      inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
      cols.append(np.where(inside, ny * w + nx, h * w))
  return np.stack(cols, axis=1).astype(np.int32)


class CompactLayout(NamedTuple):
  """Where each frame's active positions live in a ``[N,K,...]`` buffer."""
  index: jax.Array        # [N,K] flat position held by each slot; n = none
  valid: jax.Array        # [N,K] slot holds an active position
  slot_of_pos: jax.Array  # [N,n] slot of each position; K = none (zero row)
  neighbours: jax.Array   # [N,K,9] slot of each neighbour; K = none


def compact_layout(active: jax.Array, capacity: int) -> CompactLayout:
  """Slots of the active positions, in position order, and their neighbours.

  The slot of an active position is its rank among the frame's active
  positions (a cumulative sum); the slots' positions follow by one scatter
  of the positions to their ranks, no sort.  A slot without a position
  (``valid == False``) has the position ``n`` and every neighbour ``K``, so
  it reads only the zero row.  Positions beyond ``capacity`` active ones get
  no slot (a nucleus never has more).
  """
  n_frames, h, w = active.shape
  n, k = h * w, capacity
  flat = active.reshape(n_frames, n)
  rank = jnp.cumsum(flat, axis=-1, dtype=jnp.int32) - 1
  slot_of_pos = jnp.where(flat & (rank < k), rank, k).astype(jnp.int32)
  frames = jnp.arange(n_frames, dtype=jnp.int32)[:, None]
  pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (n_frames, n))
  index = jnp.full((n_frames, k + 1), n, jnp.int32)
  index = index.at[frames, slot_of_pos].set(pos, mode='promise_in_bounds')
  index = index[:, :k]
  table = jnp.asarray(np.concatenate(
      [neighbour_table(h, w), np.full((1, 9), n, np.int32)]))
  pos_nb = table[index]                                        # [N,K,9]
  padded = jnp.pad(slot_of_pos, ((0, 0), (0, 1)), constant_values=k)
  neighbours = jax.vmap(lambda s, p: s[p])(padded, pos_nb)
  return CompactLayout(index, index < n, slot_of_pos, neighbours)


def _with_zero_row(h: jax.Array) -> jax.Array:
  """``[R,C]`` -> ``[R+1,C]``: row ``R`` is the zero row of every sentinel."""
  return jnp.concatenate([h, jnp.zeros_like(h[:1])], axis=0)


def _global_slots(slots: jax.Array, capacity: int) -> jax.Array:
  """Per-frame slots ``[N,...]`` (``capacity`` = none) -> rows of ``[N*K+1]``.

  Slot ``s`` of frame ``f`` is row ``f * K + s``; every sentinel becomes row
  ``N * K``, the shared zero row appended by ``_with_zero_row``.
  """
  n_frames = slots.shape[0]
  offset = jnp.arange(n_frames, dtype=slots.dtype) * capacity
  offset = offset.reshape((n_frames,) + (1,) * (slots.ndim - 1))
  return jnp.where(slots >= capacity, n_frames * capacity, slots + offset)


def _take_rows(buf: jax.Array, rows: jax.Array) -> jax.Array:
  """One 2-D row gather ``buf[rows]``; faster on XLA:CPU than a vmapped one."""
  return jnp.take(buf, rows.reshape(-1), axis=0, mode='clip')


@jax.custom_vjp
def _neighbourhoods(padded: jax.Array, neighbours: jax.Array) -> jax.Array:
  """``[R+1,C]``, ``[R,9]`` -> ``[R,9,C]``: each slot's 3x3 neighbourhood.

  Its gradient is a gather too, not a scatter-add: slot ``k`` sees slot ``m``
  at offset ``d`` exactly when ``m`` sees ``k`` at offset ``8 - d`` (the
  neighbour relation is symmetric; empty slots see only the zero row).
  """
  return _take_rows(padded, neighbours).reshape(
      neighbours.shape + padded.shape[-1:])


def _neighbourhoods_fwd(padded, neighbours):
  return _neighbourhoods(padded, neighbours), (neighbours, padded.shape[0])


def _neighbourhoods_bwd(res, g):
  neighbours, padded_rows = res
  rows, _, c = g.shape
  g = g.reshape(rows * 9, c)
  # Row ``m * 9 + d`` of ``g`` is slot ``m``'s gradient at offset ``d``;
  # the sentinel ``rows`` gives ``rows * 9 + d``, past the end: zero.  Nine
  # [R, C] gathers added in one fusion, no [R, 9, C] intermediate.
  flipped = neighbours[:, ::-1] * 9
  d_padded = sum(
      jnp.take(g, flipped[:, d] + d, axis=0, mode='fill', fill_value=0)
      for d in range(9))
  d_padded = jnp.pad(d_padded, ((0, padded_rows - rows), (0, 0)))
  return d_padded, np.zeros(neighbours.shape, jax.dtypes.float0)


_neighbourhoods.defvjp(_neighbourhoods_fwd, _neighbourhoods_bwd)


def gathered_conv3x3(
    h: jax.Array, neighbours: jax.Array, kernel: jax.Array
) -> jax.Array:
  """Submanifold 3x3 conv on a flat compact buffer: [N*K,C] -> [N*K,O].

  ``neighbours [N*K,9]`` are rows of ``h`` with ``N*K`` for a missing
  neighbour (see ``_global_slots``).
  """
  rows, c = h.shape
  patches = _neighbourhoods(_with_zero_row(h), neighbours)
  patches = patches.reshape(rows, 9 * c)                      # (dy, dx, c)
  return patches @ kernel.reshape(9 * c, -1).astype(h.dtype)


def gathered_stage(
    x: jax.Array, active: jax.Array, frame_weight: jax.Array,
    kernels: Sequence[jax.Array], norm: Norm, capacity: Optional[int] = None,
) -> Tuple[jax.Array, jax.Array]:
  """Sparse stage computed only at the (at most ``capacity``) active slots."""
  n_frames, hgt, wid, c = x.shape
  n = hgt * wid
  capacity = n if capacity is None else capacity
  layout = compact_layout(active, capacity)
  frame_start = jnp.arange(n_frames, dtype=jnp.int32)[:, None] * n
  # An empty slot reads some other row here; no valid slot ever reads it.
  h = _take_rows(x.reshape(n_frames * n, c), layout.index + frame_start)
  neighbours = _global_slots(layout.neighbours, capacity)     # [N,K,9]
  neighbours = neighbours.reshape(n_frames * capacity, 9)
  weights = (frame_weight[:, None] * layout.valid).reshape(-1)
  for i, kernel in enumerate(kernels):
    h = gathered_conv3x3(h, neighbours, kernel)               # [N*K,O]
    h = norm(i, h, weights)
  dense = _take_rows(_with_zero_row(h),
                     _global_slots(layout.slot_of_pos, capacity))
  dense = dense.reshape(n_frames, hgt, wid, h.shape[-1])
  return masked_max_pool(dense, active)


STAGES = {'masked': masked_stage, 'gathered': gathered_stage}


def get_stage(impl: str):
  if impl not in STAGES:
    raise ValueError(
        f'sparse_impl must be one of {sorted(STAGES)}, got {impl!r}')
  return STAGES[impl]
