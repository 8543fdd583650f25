"""Cross-modal attention of MESM (Eq. 1-4): text-guided nucleus of positions.

Axis letters:
  N : frames (each frame carries its clip's text vector)
  H, W : rows and columns of the feature map; n = H * W
  C : channels of the feature map M (= the width k of Eq. 1)
  D : width of the text vector q (the text encoder's CLS)

    M_q = tanh(W_m M + b_m + W_q q)                 (1)  per position, width C
    M_i = softmax_positions(W_i M_q + b_i)          (2)  over active positions
    M_ns = nucleus(M_i, top_p)                      (3)  a 0/1 mask
    M_o = M_ns * M                                  (4)

Gradient modes (``attention_grad``):
  * ``'none'`` (faithful, quirk 1 of the original): the mask comes from
    detached scores and the kept features pass on unscaled, so W_m, W_q, W_i,
    b_m, b_i (and the text through q) get exactly zero gradient from here.
  * ``'scaled'``: kept features are multiplied by their probabilities
    renormalised over the nucleus, times the number kept, i.e.
    ``s_j = |nucleus| * M_i[j] / sum_{l in nucleus} M_i[l]``; the mean scale
    over the nucleus is 1, so activations keep their size, and the scores
    receive gradients through ``s``: the attention learns.
"""

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.configs import ATTENTION_GRADS
from mesm_jax.nucleus import nucleus_mask

GRAD_MODES = ATTENTION_GRADS  # what each does: CrossModalAttention


def masked_softmax(scores: jax.Array, valid: jax.Array) -> jax.Array:
  """Softmax over the last axis restricted to ``valid`` entries (others 0)."""
  scores = jnp.where(valid, scores, jnp.finfo(scores.dtype).min)
  probs = jax.nn.softmax(scores, axis=-1)
  return jnp.where(valid, probs, 0.0)


def nucleus_scale(probs: jax.Array, keep: jax.Array) -> jax.Array:
  """``|nucleus| * p_j / sum_nucleus p`` at kept positions, 0 elsewhere."""
  kept = jnp.where(keep, probs, 0.0)
  total = jnp.sum(kept, axis=-1, keepdims=True)
  count = jnp.sum(keep, axis=-1, keepdims=True).astype(probs.dtype)
  return kept / jnp.maximum(total, jnp.finfo(probs.dtype).tiny) * count


class CrossModalAttention(nn.Module):
  """Scores every position against the text vector; keeps a nucleus.

  Attributes:
    top_p: nucleus threshold (>= 1 keeps every active position).
    grad_mode: ``'none'`` (faithful) or ``'scaled'`` (see module doc).
    dtype: compute dtype of the projections (softmax runs in float32).
  """
  top_p: float
  grad_mode: str = 'none'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, m: jax.Array, q: jax.Array, valid: jax.Array
  ) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """``m [N,H,W,C]``, ``q [N,D]``, ``valid [N,H,W]`` -> (M_o, keep, probs)."""
    if self.grad_mode not in GRAD_MODES:
      raise ValueError(f'attention_grad must be one of {GRAD_MODES}, '
                       f'got {self.grad_mode!r}')
    n_frames, h, w, k = m.shape
    proj_m = nn.Dense(k, dtype=self.dtype, name='w_m')(m)
    proj_q = nn.Dense(k, use_bias=False, dtype=self.dtype, name='w_q')(q)
    m_q = jnp.tanh(proj_m + proj_q[:, None, None, :])
    scores = nn.Dense(1, dtype=self.dtype, name='w_i')(m_q)[..., 0]
    flat_valid = valid.reshape(n_frames, h * w)
    probs = masked_softmax(scores.reshape(n_frames, h * w).astype(jnp.float32),
                           flat_valid)
    keep = nucleus_mask(probs, self.top_p, flat_valid)
    if self.grad_mode == 'scaled':
      gate = nucleus_scale(probs, keep)
    else:
      gate = keep.astype(jnp.float32)
    out = m * gate.reshape(n_frames, h, w, 1).astype(m.dtype)
    return out, keep.reshape(n_frames, h, w), probs.reshape(n_frames, h, w)
