"""LF-LSTM: one bidirectional LSTM per modality, late fusion.

Axis letters:
  B : clips;  L : positions;  D : feature width of the modality (300, 144,
  35), also the LSTM hidden size;  E : emotions;  M : modalities

Per modality m (a subset of 'tav', in that order):
  x [B,L,D] -> BiLSTM(hidden D) -> r [B,2D] -> Dense(D) -> ReLU -> Dense(E)
  t  r = [out_f, out_b] at the last real word: the original takes
     ``output[-1]`` of the (unpacked) bidirectional LSTM, i.e. both
     directions' outputs at the last time step, concatenated; the backward
     half has read only that last word.
  a, v  r = [h_f, h_b]: the final hidden states of both directions
     (PyTorch's ``h_n`` transposed and flattened, forward first).
  fusion: ``LateFusion`` (Linear(M -> 1, no bias); one modality: as is).

As in the original (MESM code, ``src/models/baselines/lf_rnn.py``): one layer
(so no inter-layer dropout) and no dropout in the heads.  Deliberate
difference: the original runs its LSTMs over zero-padded, unpacked sequences
(the padding steps enter the forward state and the text's "last step" can be a
pad); here padding is ignored through ``seq_lengths``, so outputs do not
depend on how much a batch is padded.  Flax's LSTM cell has one bias per gate
where PyTorch has two (``b_ih`` and ``b_hh``): 4H fewer parameters per
direction, the same function class.
"""

from typing import Any, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.models.baselines import common
from mesm_jax.models.fusion import LateFusion


class LFLSTM(nn.Module):
  """LF-LSTM baseline; see the module doc.

  ``__call__(batch, train)`` returns ``{'logits': [B,E], 'modality_logits':
  {m: [B,E]}, 'stats': {}}`` like ``MultimodalModel``.
  """
  num_emotions: int
  modalities: str = 'tav'
  feature_dims: Tuple[int, int, int] = common.FEATURE_DIMS

  @nn.compact
  def __call__(self, batch: Dict[str, Any],
               train: bool = False) -> Dict[str, Any]:
    del train                                     # nothing random in it
    mods = common.ordered(self.modalities)
    common.check_batch(batch, mods)
    logits = {}
    for m in mods:
      name = common.NAMES[m]
      d = common.feature_dim(self.feature_dims, m)
      x, mask = common.modality_inputs(batch, m)
      out_f, out_b, h_f, h_b = common.BiLSTM(d, name=f'{name}_lstm')(
          x, common.lengths_of(mask))
      if m == 't':
        r = common.last_real(jnp.concatenate([out_f, out_b], -1), mask)
      else:
        r = jnp.concatenate([h_f, h_b], -1)                      # [B,2D]
      logits[m] = self._head(r, d, name)
    fused = LateFusion(name='fusion')([logits[m] for m in mods])
    return {'logits': fused, 'modality_logits': logits, 'stats': {}}

  def _head(self, r: jax.Array, d: int, name: str) -> jax.Array:
    """Linear(2D -> D), ReLU, Linear(D -> E)."""
    h = nn.relu(nn.Dense(d, name=f'{name}_head_fc1')(r))
    return nn.Dense(self.num_emotions, name=f'{name}_head_fc2')(h)
