"""Text encoders: the interface, the scratch encoder and the factory.

Axis letters: B clips, L tokens, D width.

Interface of every text encoder (a Linen module):

    enc(token_ids [B,L] int32, mask [B,L], train=bool) -> (hidden [B,L,D], cls [B,D])

The model names it ``text_encoder``, so its parameters are the subtree
``params['text_encoder']`` (own learning rate; pretrained weights replace it).
The CLS feeds the text head and is MESM's attention query q.
"""

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.models.transformer import Encoder
from mesm_jax.text import checkpoint as pretrained


class ScratchTextEncoder(nn.Module):
  """Randomly initialised post-norm Transformer with learned positions.

  Token + position embeddings, LayerNorm, dropout, ``num_layers`` post-norm
  layers (ReLU feed-forward); the first token's output is the CLS.
  """
  vocab_size: int
  dim: int
  num_layers: int
  num_heads: int
  ff_dim: int
  max_len: int
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @property
  def hidden_size(self) -> int:  # D, as the pretrained encoders name it
    return self.dim

  @nn.compact
  def __call__(self, token_ids: jax.Array, mask: jax.Array,
               train: bool = False) -> Tuple[jax.Array, jax.Array]:
    length = token_ids.shape[-1]
    if length > self.max_len:
      raise ValueError(f'text of {length} tokens exceeds the scratch encoder '
                       f'max_len {self.max_len} (text_max_len)')
    tok = nn.Embed(self.vocab_size, self.dim, name='token_embed')(token_ids)
    pos = self.param('pos_embed', nn.initializers.normal(0.02),
                     (self.max_len, self.dim), jnp.float32)
    x = nn.LayerNorm(epsilon=1e-5, name='embed_norm')(tok + pos[:length])
    x = nn.Dropout(self.dropout)(x, deterministic=not train).astype(self.dtype)
    x = Encoder(self.num_layers, self.num_heads, self.ff_dim, self.dropout,
                self.dtype, name='encoder')(x, mask.astype(bool), train)
    return x, x[:, 0]


def build_text_encoder(config) -> nn.Module:
  """``text_model='scratch'`` -> ScratchTextEncoder; else a pretrained one."""
  if config.text_model == 'scratch':
    return ScratchTextEncoder(
        vocab_size=config.scratch_vocab_size, dim=config.scratch_text_dim,
        num_layers=config.scratch_text_layers,
        num_heads=config.scratch_text_heads,
        ff_dim=config.scratch_text_ff_dim, max_len=config.text_max_len,
        dropout=config.dropout, dtype=jnp.dtype(config.dtype))
  return pretrained.build_pretrained_encoder(config)
