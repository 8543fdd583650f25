"""BERT encoder (covers all-MiniLM-L6-v2: a 6-layer, 384-wide BERT)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.text import layers


class BertEncoder(nn.Module):
  """``enc(ids [B, L], mask [B, L], train) -> (hidden [B, L, D], cls [B, D])``.

  ``cls`` is the first token's last hidden state (the [CLS] vector MESM uses
  as its text query), not BERT's tanh pooler.
  """
  cfg: layers.EncoderConfig
  dtype: Any = jnp.float32

  @property
  def hidden_size(self) -> int:
    return self.cfg.hidden_size

  @nn.compact
  def __call__(self, token_ids: jax.Array, mask: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    x = layers.Embeddings(self.cfg, self.dtype, name='embeddings')(
        token_ids, train)
    bias = layers.attention_bias(mask)
    for i in range(self.cfg.num_layers):
      x = layers.TransformerLayer(self.cfg, self.dtype, name=f'layer_{i}')(
          x, bias, train)
    return x, x[:, 0]
