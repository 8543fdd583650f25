"""MulT: the Multimodal Transformer of Tsai et al. (ACL 2019).

Axis letters:
  B : clips;  L : positions of the target modality;  S : positions of a
  source modality;  Din : a modality's feature width (300, 144, 35)
  d : ``d_model`` (30);  C : width of the concatenated last states
  E : emotions;  M : modalities

Follows ``MULTModel`` of yaohungt/Multimodal-Transformer (``src/models.py``,
``modules/transformer.py``, ``modules/position_embedding.py``):
  1. text input dropout ``embed_dropout``; every modality projected to d by a
     bias-free temporal Conv1d (kernel 1 by default, 'same' zero padding),
     skipped when Din == d and the kernel is 1, as in the original.
  2. for every ordered pair (target m <- source s), a crossmodal encoder
     ``trans_<m>_with_<s>``: queries from m, keys and values from s.
  3. per target a self-attention encoder ``trans_<m>_mem`` on the
     concatenation of its crossmodal outputs ([B,L,2d] with three
     modalities), with max(``num_layers``, 3) layers.
  4. each target's output at its last real position, concatenated
     ([B,C], C = 2d M = 180), a residual block
     ``proj2(dropout(relu(proj1(h)))) + h`` and ``out_layer`` -> [B,E].
  Each encoder: ``x * sqrt(width) + sinusoidal positions`` (fairseq style:
  positions 1, 2, ..., sin half then cos half, a zero column for odd
  widths), embedding dropout (drawn separately for the keys and the values of
  a crossmodal encoder, as there), pre-norm layers (``LN0`` shared by the
  query and the key/value inputs; attention with dropout on its weights;
  residual dropout; ``LN1``, Linear(4 width), ReLU, relu dropout,
  Linear(width), residual dropout) and a final LayerNorm.
  Defaults are the original ``main.py``'s: 5 heads, 5 levels, attention
  dropout 0.1 (0.0 when the source is audio or visual: the original picks the
  crossmodal attention dropout by the source modality, ``attn_dropout_a``/
  ``_v``), relu 0.1, residual 0.1, embedding 0.25, output 0.0, and
  ``attn_mask`` on (its ``--attn_mask`` flag is ``store_false``): the
  original's ``buffered_future_mask`` lets query i see keys
  j <= i + |S - L|.

Deliberate differences:
  * Key padding masks.  The original pads unaligned data with zeros and
    masks nothing but the future; here padded keys are masked, the future
    mask uses each clip's real lengths (L, S above), positions are 1..L for
    every real step (the original gives position 0, a zero vector, to any
    step whose first feature is exactly 0), and "the last time step" is the
    target's last real position.  Outputs do not depend on batch padding.
  * A subset of modalities: every target attends to each other modality in
    the subset (memory width d (M - 1)); with one modality the memory
    encoder runs on the projected sequence itself (width d).  The original's
    ``lonly``/``aonly``/``vonly`` keep all three inputs and drop targets.
  * Flax's default initialisers (the original: xavier-uniform for the
    attention and the feed-forward Linears, PyTorch defaults elsewhere).
  * No per-modality logits: ``modality_logits`` is ``{}``.
"""

import math
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mesm_jax.models.baselines import common


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
  """fairseq's table for positions 1..length: ``[length, dim]`` float32."""
  half = dim // 2
  step = math.log(10000) / max(half - 1, 1)
  freqs = np.exp(np.arange(half, dtype=np.float64) * -step)
  angles = np.arange(1, length + 1, dtype=np.float64)[:, None] * freqs[None]
  table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
  if dim % 2:
    table = np.concatenate([table, np.zeros((length, 1))], axis=1)
  return table.astype(np.float32)


def attention_mask(q_mask: jax.Array, k_mask: jax.Array,
                   future: bool) -> jax.Array:
  """``[B,1,L,S]``: real keys, and with ``future`` only j <= i + |S - L|.

  ``q_mask [B,L]``, ``k_mask [B,S]``; L and S in the future mask are each
  clip's real lengths (the original's ``buffered_future_mask`` on padded
  lengths).  Padded queries are not masked (nothing reads them).
  """
  allowed = jnp.broadcast_to(k_mask[:, None, :],
                             (k_mask.shape[0], q_mask.shape[1],
                              k_mask.shape[1]))
  if future:
    lq = q_mask.sum(-1)[:, None, None]
    lk = k_mask.sum(-1)[:, None, None]
    i = jnp.arange(q_mask.shape[1])[None, :, None]
    j = jnp.arange(k_mask.shape[1])[None, None, :]
    allowed = allowed & (j <= i + jnp.abs(lk - lq))
  return allowed[:, None]


class MulTLayer(nn.Module):
  """One pre-norm layer; cross-attention when ``k``/``v`` are given."""
  num_heads: int
  attn_dropout: float
  relu_dropout: float
  res_dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, k: Optional[jax.Array],
               v: Optional[jax.Array], mask: jax.Array,
               train: bool) -> jax.Array:
    """``x [B,L,W]``, ``k``/``v [B,S,W]`` or None, ``mask [B,1,L,S]``."""
    w = x.shape[-1]
    det = not train
    norm0 = nn.LayerNorm(epsilon=1e-5, name='norm0')
    h = norm0(x)
    k, v = (h, h) if k is None else (norm0(k), norm0(v))
    h = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_features=w, out_features=w,
        dropout_rate=self.attn_dropout, broadcast_dropout=False,
        name='attention')(h, k, v, mask=mask, deterministic=det)
    x = x + nn.Dropout(self.res_dropout)(h, deterministic=det)
    h = nn.LayerNorm(epsilon=1e-5, name='norm1')(x)
    h = nn.relu(nn.Dense(4 * w, name='fc1')(h))
    h = nn.Dropout(self.relu_dropout)(h, deterministic=det)
    h = nn.Dense(w, name='fc2')(h)
    return x + nn.Dropout(self.res_dropout)(h, deterministic=det)


class MulTEncoder(nn.Module):
  """The original ``TransformerEncoder``: scaled input + positions, layers,
  final LayerNorm.  ``src`` None: self-attention; else crossmodal."""
  num_layers: int
  num_heads: int
  attn_dropout: float
  relu_dropout: float
  res_dropout: float
  embed_dropout: float
  attn_mask: bool

  @nn.compact
  def __call__(self, x: jax.Array, x_mask: jax.Array,
               src: Optional[jax.Array] = None,
               src_mask: Optional[jax.Array] = None,
               train: bool = False) -> jax.Array:
    """``x [B,L,W]``, ``x_mask [B,L]``, ``src [B,S,W]`` -> ``[B,L,W]``."""
    w = x.shape[-1]

    def embed(y):
      y = math.sqrt(w) * y + sinusoidal_positions(y.shape[1], w)
      return nn.Dropout(self.embed_dropout)(y, deterministic=not train)

    h = embed(x)
    if src is None:
      k = v = None
      mask = attention_mask(x_mask, x_mask, self.attn_mask)
    else:
      k, v = embed(src), embed(src)       # separate dropout draws
      mask = attention_mask(x_mask, src_mask, self.attn_mask)
    for i in range(self.num_layers):
      h = MulTLayer(self.num_heads, self.attn_dropout, self.relu_dropout,
                    self.res_dropout, name=f'layer{i}')(h, k, v, mask, train)
    return nn.LayerNorm(epsilon=1e-5, name='norm')(h)


class MulT(nn.Module):
  """MulT baseline; see the module doc.

  ``__call__(batch, train)`` returns ``{'logits': [B,E], 'modality_logits':
  {}, 'stats': {}}``.
  """
  num_emotions: int
  modalities: str = 'tav'
  feature_dims: Tuple[int, int, int] = common.FEATURE_DIMS
  d_model: int = 30
  num_heads: int = 5
  num_layers: int = 5
  mem_layers: int = 3                 # the memory has max(num_layers, 3)
  conv_kernels: Tuple[int, int, int] = (1, 1, 1)
  attn_dropout: float = 0.1
  attn_dropout_a: float = 0.0
  attn_dropout_v: float = 0.0
  relu_dropout: float = 0.1
  res_dropout: float = 0.1
  embed_dropout: float = 0.25
  out_dropout: float = 0.0
  attn_mask: bool = True

  @nn.compact
  def __call__(self, batch: Dict[str, Any],
               train: bool = False) -> Dict[str, Any]:
    mods = common.ordered(self.modalities)
    common.check_batch(batch, mods)
    proj, masks = {}, {}
    for m in mods:
      proj[m], masks[m] = self._project(batch, m, train)
    last = []
    for m in mods:
      h = proj[m]
      sources = [s for s in mods if s != m]
      if sources:
        h = jnp.concatenate([
            self._encoder(self._source_dropout(s), self.num_layers,
                          f'trans_{m}_with_{s}')(
                              proj[m], masks[m], proj[s], masks[s], train)
            for s in sources], axis=-1)
      h = self._encoder(self.attn_dropout,
                        max(self.num_layers, self.mem_layers),
                        f'trans_{m}_mem')(h, masks[m], train=train)
      last.append(common.last_real(h, masks[m]))
    last_hs = jnp.concatenate(last, axis=-1)                    # [B,C]
    c = last_hs.shape[-1]
    h = nn.relu(nn.Dense(c, name='proj1')(last_hs))
    h = nn.Dropout(self.out_dropout)(h, deterministic=not train)
    h = nn.Dense(c, name='proj2')(h) + last_hs
    logits = nn.Dense(self.num_emotions, name='out_layer')(h)
    return {'logits': logits, 'modality_logits': {}, 'stats': {}}

  def _project(self, batch, m, train):
    """Zeroed padding, text dropout, Conv1d(Din -> d, no bias)."""
    x, mask = common.modality_inputs(batch, m)
    if m == 't':
      x = nn.Dropout(self.embed_dropout)(x, deterministic=not train)
    k = self.conv_kernels[common.MODALITY_ORDER.index(m)]
    if k % 2 == 0:
      raise ValueError(f'conv_kernels must be odd (same length), got {k}')
    if x.shape[-1] != self.d_model or k != 1:
      x = nn.Conv(self.d_model, (k,), padding=[((k - 1) // 2,) * 2],
                  use_bias=False, name=f'proj_{m}')(x)
    return x, mask

  def _source_dropout(self, s: str) -> float:
    """The original keys the crossmodal attention dropout by the source."""
    return {'t': self.attn_dropout, 'a': self.attn_dropout_a,
            'v': self.attn_dropout_v}[s]

  def _encoder(self, attn_dropout, layers, name):
    return MulTEncoder(layers, self.num_heads, attn_dropout,
                       self.relu_dropout, self.res_dropout,
                       self.embed_dropout, self.attn_mask, name=name)
