"""Shared pieces of the feature-sequence baselines (Tables 3 and 4).

Axis letters:
  B : clips;  L : positions of one modality's sequence (words or frames)
  D : feature width of a modality;  H : LSTM hidden size;  E : emotions

Batch contract (hand-crafted features, padded at the end), at the widths
of the data (``feature_dims``, which the models are built at; e.g. the
raw-clip source's 300 / 144 / 35, MulT's MOSEI pickle's 300 / 74 / 35):
  text_feats [B,Lt,Dt] word vectors,       text_feats_mask [B,Lt]
  audio_feats [B,La,Da] acoustic frames,   audio_feats_mask [B,La]
  vision_feats [B,Lv,Dv] facial action units per frame, vision_feats_mask
  clip_mask [B] (optional; False = a padding clip)
Masks are True at real positions.  Every model reads a modality through
``modality_inputs``: padded positions (and every position of a padding clip)
enter as zeros, so their content, even NaN, reaches neither values nor
gradients.
"""

from typing import Any, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

MODALITY_ORDER = 'tav'
# The raw-clip source's widths (text, audio, visual): the modules' default
# only; ``build_baseline_model`` always passes the data's.
FEATURE_DIMS = (300, 144, 35)
FEATURE_KEYS = {'t': ('text_feats', 'text_feats_mask'),
                'a': ('audio_feats', 'audio_feats_mask'),
                'v': ('vision_feats', 'vision_feats_mask')}
NAMES = {'t': 'text', 'a': 'audio', 'v': 'visual'}


def ordered(modalities: str) -> str:
  """``modalities`` in 'tav' order; raises on unknown or repeated letters."""
  if not modalities or set(modalities) - set(MODALITY_ORDER) or len(
      set(modalities)) != len(modalities):
    raise ValueError(f'modalities must be a non-empty subset of '
                     f'{MODALITY_ORDER!r} without repeats, got {modalities!r}')
  return ''.join(m for m in MODALITY_ORDER if m in modalities)


def feature_dim(feature_dims: Tuple[int, int, int], m: str) -> int:
  return int(feature_dims[MODALITY_ORDER.index(m)])


def check_batch(batch: Dict[str, Any], modalities: str) -> None:
  """Clear error when a modality's arrays are missing from the batch."""
  for m in modalities:
    missing = [k for k in FEATURE_KEYS[m] if k not in batch]
    if missing:
      raise KeyError(f'modality {m!r} needs batch keys {missing}; the batch '
                     f'has {sorted(batch)}')


def modality_inputs(batch: Dict[str, Any], m: str
                    ) -> Tuple[jax.Array, jax.Array]:
  """``(x [B,L,D] float32 with zeros at padding, mask [B,L] bool)``."""
  key, mask_key = FEATURE_KEYS[m]
  x = jnp.asarray(batch[key], jnp.float32)
  mask = jnp.asarray(batch[mask_key], bool)
  if 'clip_mask' in batch:
    mask = mask & jnp.asarray(batch['clip_mask'], bool)[:, None]
  return jnp.where(mask[..., None], x, 0.0), mask


def lengths_of(mask: jax.Array) -> jax.Array:
  """Real lengths ``[B]``, at least 1 (an empty sequence reads one zero)."""
  return jnp.maximum(mask.sum(-1), 1).astype(jnp.int32)


def last_real(x: jax.Array, mask: jax.Array) -> jax.Array:
  """``x [B,L,D]`` at the last real position of each row -> ``[B,D]``."""
  idx = lengths_of(mask) - 1
  return jnp.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]


class BiLSTM(nn.Module):
  """One bidirectional LSTM layer over end-padded sequences.

  Flax's ``nn.RNN`` with ``seq_lengths``: the forward direction's final state
  is the one at the last real position, the backward direction runs over the
  real positions only (``flip_sequences`` keeps the padding at the end), so
  padding never enters a real position's output or a final state.  Cells are
  ``OptimizedLSTMCell`` (sigmoid gates, tanh; one bias per gate, on the
  hidden-to-hidden kernels ``h*``; the input kernels ``i*`` have none).

  ``__call__(x [B,L,D], lengths [B]) -> (out_f [B,L,H], out_b [B,L,H],
  h_f [B,H], h_b [B,H])``; ``h_b`` is the backward state after reading
  position 0 (PyTorch's ``h_n[1]``).
  """
  hidden: int

  @nn.compact
  def __call__(self, x: jax.Array, lengths: jax.Array):
    fwd = nn.RNN(nn.OptimizedLSTMCell(self.hidden, name='forward'),
                 return_carry=True)
    bwd = nn.RNN(nn.OptimizedLSTMCell(self.hidden, name='backward'),
                 return_carry=True, reverse=True, keep_order=True)
    (_, h_f), out_f = fwd(x, seq_lengths=lengths)
    (_, h_b), out_b = bwd(x, seq_lengths=lengths)
    return out_f, out_b, h_f, h_b
