"""Post-norm Transformer encoders (PyTorch ``TransformerEncoderLayer`` rules).

Axis letters:
  B : clips
  L : sequence positions (frames/chunks, with the CLS in front; or tokens)
  D : model width

A layer is ``x = LN(x + drop(SA(x))); x = LN(x + drop(FF(x)))`` with
``FF = Linear(ff) -> ReLU -> dropout -> Linear(D)``, dropout also on the
attention weights, LayerNorm eps 1e-5.  Padding positions are masked as keys.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class PostNormEncoderLayer(nn.Module):
  """One post-norm encoder layer (self-attention + ReLU feed-forward)."""
  num_heads: int
  ff_dim: int
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    """``x [B,L,D]``, ``mask [B,L]`` (True = real) -> ``[B,L,D]``."""
    d = x.shape[-1]
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train)
    attn_mask = nn.make_attention_mask(jnp.ones_like(mask), mask)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_features=d, out_features=d,
        dropout_rate=self.dropout, dtype=self.dtype, name='attention')(
            x, x, mask=attn_mask, deterministic=not train)
    x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name='norm1')(x + drop(y))
    y = nn.Dense(self.ff_dim, dtype=self.dtype, name='ff1')(x)
    y = nn.Dense(d, dtype=self.dtype, name='ff2')(drop(nn.relu(y)))
    norm2 = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name='norm2')
    return norm2(x + drop(y))


class Encoder(nn.Module):
  """A stack of ``num_layers`` post-norm layers."""
  num_layers: int
  num_heads: int
  ff_dim: int
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    for i in range(self.num_layers):
      x = PostNormEncoderLayer(self.num_heads, self.ff_dim, self.dropout,
                               self.dtype, name=f'layer{i}')(x, mask, train)
    return x


class SequenceTransformer(nn.Module):
  """Per-modality encoder over frames/chunks: learned CLS, no positions.

  ``__call__(x [B,F,D], mask [B,F], train) -> CLS output [B,D]``.
  """
  num_layers: int
  num_heads: int
  ff_dim: int
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    b, _, d = x.shape
    cls = self.param('cls', nn.initializers.normal(0.02), (d,), jnp.float32)
    x = jnp.concatenate(
        [jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
    mask = jnp.concatenate([jnp.ones((b, 1), bool), mask.astype(bool)], axis=1)
    x = Encoder(self.num_layers, self.num_heads, self.ff_dim, self.dropout,
                self.dtype, name='encoder')(x, mask, train)
    return x[:, 0]
