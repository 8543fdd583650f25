"""ALBERT encoder: factorised embeddings and cross-layer parameter sharing.

Embeddings are E wide (128 for ALBERT base) and projected to D (768) by
``embedding_projection`` (HF ``encoder.embedding_hidden_mapping_in``).  The
``num_layers`` layer applications use ``num_hidden_groups`` groups of
``inner_group_num`` shared layers each; every released ALBERT has one group of
one layer, i.e. ONE layer applied ``num_layers`` times.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.text import layers


class AlbertEncoder(nn.Module):
  """``enc(ids [B, L], mask [B, L], train) -> (hidden [B, L, D], cls [B, D])``."""
  cfg: layers.EncoderConfig
  dtype: Any = jnp.float32

  @property
  def hidden_size(self) -> int:
    return self.cfg.hidden_size

  @nn.compact
  def __call__(self, token_ids: jax.Array, mask: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    cfg = self.cfg
    x = layers.Embeddings(cfg, self.dtype, name='embeddings')(token_ids, train)
    x = nn.Dense(cfg.hidden_size, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=nn.initializers.normal(layers.INIT_STD),
                 name='embedding_projection')(x)
    bias = layers.attention_bias(mask)
    groups = [[layers.TransformerLayer(cfg, self.dtype,
                                       name=f'group_{g}_layer_{j}')
               for j in range(cfg.inner_group_num)]
              for g in range(cfg.num_hidden_groups)]
    for i in range(cfg.num_layers):
      # HF: group index = int(i / (num_layers / num_hidden_groups)).
      for layer in groups[int(i / (cfg.num_layers / cfg.num_hidden_groups))]:
        x = layer(x, bias, train)  # the same module instance: shared weights
    return x, x[:, 0]
