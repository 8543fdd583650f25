"""Fast pieces of the ``gathered`` sparse stage: compaction, row gathers, conv.

Axis letters:
  N : frames (clips x frames, or clips x spectrogram chunks), flattened
  n : positions of one frame's feature map (H * W)
  K : the static capacity of a stage (slots per frame)
  C, O : input and output channels
  9 : the 3x3 neighbourhood of a position, (dy, dx) in row-major order

Why these exist.  Differentiating a gather gives a scatter-add, which XLA runs
as a slow serial loop on CPU.  Every gather of a sparse stage is a gather
along a *partial permutation* (each position sits in at most one slot and
vice versa), so its transpose is again a gather, through the inverse
permutation; ``jax.custom_vjp`` says so.  Likewise the transpose of a
submanifold 3x3 convolution is a submanifold convolution with the flipped
(and transposed) kernel over the same neighbour table, because the neighbour
relation among active positions is symmetric: slot ``k`` sees slot ``m`` at
offset ``d`` exactly when ``m`` sees ``k`` at offset ``8 - d``.  So forward
and backward are both "gather the neighbourhood, one matmul", and the kernel
gradient is one matmul of the gathered patches with the output gradient.

Conventions that make the transposes exact:
  * a slot that holds no active position (``valid == False``) has every
    neighbour set to the sentinel ``K`` (a zero row) and its input row is
    zero; no valid slot ever reads it;
  * the sentinel of a position without a slot is ``K``, of a slot without a
    position is ``n``; gathers read a zero row there.

Compaction is ``sparse.compact_layout`` (a cumulative sum and one scatter of
the position ranks, no sort), shared with ``sparse.gathered_stage``.

Measured on XLA:CPU (docs/benchmarks.md, runs 1-2): exact, but no faster
than the autodiff ``sparse.gathered_stage`` of that time (stages 3-5
forward + backward at p = 0.5: 0.557x of the dense stages against 0.551x;
CNNs 0.758x against 0.735x). XLA:CPU's scatter-add was not the bottleneck
there; the memory-bound patch gathers were.  Since run 3,
``sparse.gathered_stage`` uses 2-D row gathers and a gather-only gradient
for its neighbourhood gather alone, and is faster than this module (run 4,
feature extraction at p = 0.5: 0.777-0.784x of FE2E against 0.757-0.759x for
``sparse.gathered_stage``).  Kept
as an alternative for accelerators, where a scatter-add means atomics;
``experiments/benchmark.py`` registers it as ``gathered_vjp``.
"""

import functools
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mesm_jax.models import sparse as sparse_lib


def take_rows(buf: jax.Array, index: jax.Array) -> jax.Array:
  """``out[f, s] = buf[f, index[f, s]]``: ``[N,R,C]``, ``[N,S]`` -> ``[N,S,C]``.

  ``index == R`` (the sentinel) reads a zero row appended to every frame;
  a per-frame (``vmap``) row gather.
  """
  padded = jnp.concatenate([buf, jnp.zeros_like(buf[:, :1])], axis=1)
  return jax.vmap(lambda b, i: b[i])(padded, index)


@jax.custom_vjp
def permute_rows(x: jax.Array, index: jax.Array, inverse: jax.Array) -> jax.Array:
  """Rows of ``x [N,R,C]`` at ``index [N,S]`` (``R`` = a zero row).

  ``inverse [N,R]`` must be the inverse partial permutation (``S`` where a
  row is not read); the gradient is then a gather too, not a scatter-add.
  """
  return take_rows(x, index)


def _permute_fwd(x, index, inverse):
  return permute_rows(x, index, inverse), (index, inverse)


def _permute_bwd(res, g):
  index, inverse = res
  return (take_rows(g, inverse),
          np.zeros(index.shape, jax.dtypes.float0),
          np.zeros(inverse.shape, jax.dtypes.float0))


permute_rows.defvjp(_permute_fwd, _permute_bwd)


def patches(h: jax.Array, neighbours: jax.Array) -> jax.Array:
  """``[N,K,C]``, ``[N,K,9]`` -> ``[N*K, 9*C]`` neighbourhoods (sentinel = 0)."""
  n_frames, k, c = h.shape
  p = take_rows(h, neighbours.reshape(n_frames, k * 9))
  return p.reshape(n_frames * k, 9 * c)


def _conv(h, neighbours, kernel):
  n_frames, k, c = h.shape
  out = patches(h, neighbours) @ kernel.reshape(9 * c, -1).astype(h.dtype)
  return out.reshape(n_frames, k, -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def subm_conv3x3(h: jax.Array, neighbours: jax.Array, kernel: jax.Array,
                 save_patches: bool = True) -> jax.Array:
  """Submanifold 3x3 conv on a compact buffer: ``[N,K,C]`` -> ``[N,K,O]``.

  ``save_patches`` keeps the ``[N*K, 9C]`` patches for the kernel gradient
  (fast); ``False`` gathers them again in the backward pass (less memory).
  """
  del save_patches
  return _conv(h, neighbours, kernel)


def _conv_fwd(h, neighbours, kernel, save_patches):
  n_frames, k, c = h.shape
  p = patches(h, neighbours)
  out = (p @ kernel.reshape(9 * c, -1).astype(h.dtype)).reshape(n_frames, k, -1)
  saved = p if save_patches else h
  return out, (saved, neighbours, kernel)


def _conv_bwd(save_patches, res, g):
  saved, neighbours, kernel = res
  n_frames, k, o = g.shape
  c = kernel.shape[2]
  p = saved if save_patches else patches(saved, neighbours)
  g2 = g.reshape(n_frames * k, o)
  d_kernel = (p.T @ g2).reshape(kernel.shape).astype(kernel.dtype)
  # Transposed conv: flipped offsets, kernel transposed per offset.
  flipped = kernel.reshape(9, c, o)[::-1].transpose(0, 2, 1)
  d_h = patches(g, neighbours) @ flipped.reshape(9 * o, c).astype(g.dtype)
  return (d_h.reshape(n_frames, k, c).astype(saved.dtype),
          np.zeros(neighbours.shape, jax.dtypes.float0), d_kernel)


subm_conv3x3.defvjp(_conv_fwd, _conv_bwd)


def fast_gathered_stage(
    x: jax.Array, active: jax.Array, frame_weight: jax.Array,
    kernels: Sequence[jax.Array], norm: sparse_lib.Norm,
    capacity: Optional[int] = None, save_patches: bool = True,
) -> Tuple[jax.Array, jax.Array]:
  """``sparse.gathered_stage`` with gather-only gradients (same signature)."""
  n_frames, hgt, wid, c = x.shape
  capacity = hgt * wid if capacity is None else capacity
  layout = sparse_lib.compact_layout(active, capacity)
  h = permute_rows(x.reshape(n_frames, hgt * wid, c), layout.index,
                   layout.slot_of_pos)                        # [N,K,C]
  weights = frame_weight[:, None] * layout.valid
  for i, kernel in enumerate(kernels):
    h = subm_conv3x3(h, layout.neighbours, kernel, save_patches)
    h = norm(i, h, weights)
  dense = permute_rows(h, layout.slot_of_pos, layout.index)   # [N,n,O]
  dense = dense.reshape(n_frames, hgt, wid, h.shape[-1])
  return sparse_lib.masked_max_pool(dense, active)
