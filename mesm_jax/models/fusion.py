"""Late fusion: per-modality logits [B,E,M] -> Linear(M -> 1, no bias)."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class LateFusion(nn.Module):
  """Mixes the modalities' logits with one weight per modality.

  With a single modality its logits are returned as they are.
  """

  @nn.compact
  def __call__(self, logits: Sequence[jax.Array]) -> jax.Array:
    if len(logits) == 1:
      return logits[0]
    stacked = jnp.stack(logits, axis=-1)                       # [B,E,M]
    return nn.Dense(1, use_bias=False, name='mix')(stacked)[..., 0]
