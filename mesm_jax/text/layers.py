"""Building blocks shared by the BERT and ALBERT encoders (Flax Linen).

Axis letters: B batch, L tokens (query positions), M tokens (key positions),
H attention heads, K width of one head, D hidden width, E embedding width,
F feed-forward width.

Both encoders are post-LayerNorm transformers as in Hugging Face's
``BertModel`` / ``AlbertModel``:

    x = LN(x + Dropout(Attention(x)))
    x = LN(x + Dropout(W2 act(W1 x)))

Parameters live in float32 (``param_dtype``); ``dtype`` sets the compute dtype
(bfloat16 for speed); softmax and LayerNorm statistics stay in float32.
"""

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
INIT_STD = 0.02  # HF initializer_range; used only for from-scratch modules.


def _gelu_tanh(x):
  return jax.nn.gelu(x, approximate=True)


def _gelu_erf(x):
  return jax.nn.gelu(x, approximate=False)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'gelu': _gelu_erf,               # exact (erf), BERT / MiniLM
    'gelu_new': _gelu_tanh,          # tanh approximation, ALBERT
    'gelu_pytorch_tanh': _gelu_tanh,
    'gelu_fast': _gelu_tanh,
    'relu': jax.nn.relu,
    'silu': jax.nn.silu,
    'swish': jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Sizes of a BERT-style encoder, read from a Hugging Face ``config.json``."""
  model_type: str                  # 'bert' | 'albert'
  vocab_size: int
  hidden_size: int                 # D
  num_layers: int
  num_heads: int                   # H
  intermediate_size: int           # F
  hidden_act: str
  max_position_embeddings: int
  type_vocab_size: int
  layer_norm_eps: float
  hidden_dropout: float
  attention_dropout: float
  embedding_size: int              # E (== D for BERT; 128 for ALBERT base)
  num_hidden_groups: int = 1       # ALBERT: groups of shared layers
  inner_group_num: int = 1         # ALBERT: layers inside one group

  def __post_init__(self):
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f'unsupported hidden_act {self.hidden_act!r}; '
                       f'supported: {sorted(ACTIVATIONS)}')
    if self.hidden_size % self.num_heads:
      raise ValueError(f'hidden_size {self.hidden_size} is not a multiple of '
                       f'num_attention_heads {self.num_heads}')


def _dense(features: int, dtype: Dtype, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name,
                  kernel_init=nn.initializers.normal(INIT_STD))


def _layer_norm(eps: float, dtype: Dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=jnp.float32,
                      name=name)


def attention_bias(mask: jax.Array) -> jax.Array:
  """[B, M] mask (1 = real token) -> additive logit bias [B, 1, 1, M]."""
  keep = mask[:, None, None, :] > 0
  return jnp.where(keep, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)


class Embeddings(nn.Module):
  """Word + position + token-type(0) embeddings, LN, dropout -> [B, L, E]."""
  cfg: EncoderConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, token_ids: jax.Array, train: bool) -> jax.Array:
    cfg, length = self.cfg, token_ids.shape[1]
    if length > cfg.max_position_embeddings:
      raise ValueError(f'{length} tokens exceed max_position_embeddings '
                       f'{cfg.max_position_embeddings} of the text model.')
    embed = functools.partial(
        nn.Embed, features=cfg.embedding_size, dtype=self.dtype,
        param_dtype=jnp.float32, embedding_init=nn.initializers.normal(INIT_STD))
    x = embed(cfg.vocab_size, name='word')(token_ids)
    x = x + embed(cfg.max_position_embeddings, name='position')(
        jnp.arange(length)[None])
    # token_type_ids are all zero for one-segment inputs: add row 0.
    x = x + embed(cfg.type_vocab_size, name='token_type')(
        jnp.zeros((1, length), jnp.int32))
    x = _layer_norm(cfg.layer_norm_eps, self.dtype, 'norm')(x)
    return nn.Dropout(cfg.hidden_dropout)(x, deterministic=not train)


class SelfAttention(nn.Module):
  """Multi-head self-attention with additive mask bias: [B, L, D] -> same."""
  cfg: EncoderConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array, train: bool) -> jax.Array:
    b, l, d = x.shape
    h = self.cfg.num_heads
    split = lambda t: t.reshape(b, l, h, d // h)
    q = split(_dense(d, self.dtype, 'query')(x))
    k = split(_dense(d, self.dtype, 'key')(x))
    v = split(_dense(d, self.dtype, 'value')(x))
    logits = jnp.einsum('blhk,bmhk->bhlm', q, k) / math.sqrt(d // h)
    probs = jax.nn.softmax(logits.astype(jnp.float32) + bias, axis=-1)
    probs = nn.Dropout(self.cfg.attention_dropout)(
        probs.astype(self.dtype), deterministic=not train)
    context = jnp.einsum('bhlm,bmhk->blhk', probs, v).reshape(b, l, d)
    return _dense(d, self.dtype, 'out')(context)


class TransformerLayer(nn.Module):
  """One post-LN transformer layer (HF ``BertLayer`` / ``AlbertLayer``)."""
  cfg: EncoderConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array, train: bool) -> jax.Array:
    cfg = self.cfg
    dropout = nn.Dropout(cfg.hidden_dropout)
    y = SelfAttention(cfg, self.dtype, name='attention')(x, bias, train)
    x = _layer_norm(cfg.layer_norm_eps, self.dtype, 'attention_norm')(
        x + dropout(y, deterministic=not train))
    y = _dense(cfg.intermediate_size, self.dtype, 'mlp_in')(x)
    y = _dense(cfg.hidden_size, self.dtype, 'mlp_out')(
        ACTIVATIONS[cfg.hidden_act](y))
    return _layer_norm(cfg.layer_norm_eps, self.dtype, 'output_norm')(
        x + dropout(y, deterministic=not train))
