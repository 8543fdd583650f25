"""LF-TRANS: one FE2E-style Transformer encoder per modality, late fusion.

Axis letters:
  B : clips;  L : positions;  D : feature width of the modality (300, 144,
  35), also the Transformer width;  E : emotions;  M : modalities

Per modality m (a subset of 'tav', in that order):
  x [B,L,D] -> SequenceTransformer (learned CLS in front, no positions,
  post-norm, feed-forward 2048, dropout 0.1, ``trans_nlayers`` layers; text 4
  heads, audio 2, visual 5) -> CLS [B,D] -> Dense(D // 2) -> ReLU -> Dense(E)
  fusion: ``LateFusion`` (Linear(M -> 1, no bias); one modality: as is).

As in the original (MESM code, ``src/models/baselines/lf_transformer.py``,
PyTorch ``nn.TransformerEncoderLayer`` defaults): dropout only inside the
encoder layers, none in the heads (D // 2 = 150, 72, 17).  Deliberate
difference: the original passes no padding mask for text; here every
modality's padding is masked as keys.
"""

from typing import Any, Dict, Tuple

import flax.linen as nn
import jax.numpy as jnp

from mesm_jax.models.baselines import common
from mesm_jax.models.fusion import LateFusion
from mesm_jax.models.transformer import SequenceTransformer


def check_feature_dims(feature_dims: Tuple[int, int, int], modalities: str,
                       num_heads: Tuple[int, int, int] = (4, 2, 5)) -> None:
  """Raises ValueError when a modality's width is not a multiple of its
  number of attention heads (the Transformer's width is the feature width);
  the message names the modality, the width and what to do."""
  for m in common.ordered(modalities):
    i = common.MODALITY_ORDER.index(m)
    d, heads = int(feature_dims[i]), int(num_heads[i])
    if d % heads:
      fits = [h for h in range(1, min(d, 16) + 1) if d % h == 0]
      raise ValueError(
          f'LF-TRANS: the {common.NAMES[m]} features are {d} wide, which '
          f'{heads} attention heads do not divide (its Transformer is as '
          f'wide as its features).  Fix: features of a width divisible by '
          f'{heads} (the original: text 300 / 4 heads, audio 144 / 2, visual '
          f'35 / 5), leave the modality out (--modalities), or use another '
          f'baseline; head counts that divide {d}: {fits}')


class LFTrans(nn.Module):
  """LF-TRANS baseline; see the module doc.

  ``__call__(batch, train)`` returns ``{'logits': [B,E], 'modality_logits':
  {m: [B,E]}, 'stats': {}}`` like ``MultimodalModel``.
  """
  num_emotions: int
  modalities: str = 'tav'
  feature_dims: Tuple[int, int, int] = common.FEATURE_DIMS
  num_heads: Tuple[int, int, int] = (4, 2, 5)
  trans_nlayers: int = 4
  trans_ff_dim: int = 2048
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch: Dict[str, Any],
               train: bool = False) -> Dict[str, Any]:
    mods = common.ordered(self.modalities)
    common.check_batch(batch, mods)
    logits = {}
    for m in mods:
      name = common.NAMES[m]
      d = common.feature_dim(self.feature_dims, m)
      heads = self.num_heads[common.MODALITY_ORDER.index(m)]
      x, mask = common.modality_inputs(batch, m)
      cls = SequenceTransformer(self.trans_nlayers, heads, self.trans_ff_dim,
                                self.dropout, self.dtype,
                                name=f'{name}_transformer')(
                                    x.astype(self.dtype), mask, train)
      h = nn.relu(nn.Dense(d // 2, name=f'{name}_head_fc1')(
          cls.astype(jnp.float32)))
      logits[m] = nn.Dense(self.num_emotions, name=f'{name}_head_fc2')(h)
    fused = LateFusion(name='fusion')([logits[m] for m in mods])
    return {'logits': fused, 'modality_logits': logits, 'stats': {}}
