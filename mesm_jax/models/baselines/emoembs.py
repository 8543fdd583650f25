"""EmoEmbs: modality-transferable emotion embeddings (Dai et al., AACL 2020).

Axis letters:
  B : clips;  L : positions;  D : a modality's feature width (300, 144, 35)
  H : a modality's LSTM hidden size (300, 200, 100);  G : width of the
  emotion embeddings (300, GloVe);  E : emotions;  M : modalities

Follows ``EmotionEmbAttnModel`` of wenliangdai/Modality-Transferable-MER
(``src/models/eea.py``) with the hyper-parameters of its README's training
commands (``--hidden-sizes 300 200 100 --num-layers=2 --dropout=0.15 -bi``):
  emotion embeddings [E,G]: the GloVe vectors of the emotion words, frozen;
    pass them as ``emotion_embeddings`` (a constant of the module, not a
    parameter: no gradient, no optimizer state; what training does,
    ``models.build_baseline_model``: GloVe with ``glove_path``, else the
    MiniLM substitute), or leave it None for a learned matrix (parameter
    ``emotion_embeddings``, N(0, 1/G)), a module-level option only.
  per modality m: a ``num_layers``-layer (bidirectional) LSTM of hidden size
    H_m, dropout ``dropout`` between layers (PyTorch's LSTM ``dropout``);
    the two directions' outputs of the last layer are summed ([B,L,H]) and
    read at the last time step -> r_m [B,H].
  emotion vectors of m: text the embeddings themselves (so H_t must equal G),
    audio ``affine_audio`` = Linear(G -> H_a), visual ``affine_visual`` =
    Linear(G -> H_v) applied to the embeddings -> [E,H].
  score of emotion e for m: the dot product <r_m, vector_e> (no softmax,
    no bias): ``modality_logits[m]`` [B,E].
  fusion: Linear(M -> 1, no bias) over the stacked scores, initialised to
    softmax(ones(M)) = 1/M per modality (trainable); one modality: its
    scores as they are.

Deliberate differences: the original runs unpacked LSTMs over zero-padded
sequences and reads position -1 (possibly a pad); here padding is ignored
(``seq_lengths``) and r_m is read at the last real position.  The original
builds all three LSTMs and both affine maps whatever the modalities; here
only the used ones exist.  Flax's LSTM cell has one bias per gate (PyTorch:
two).
"""

from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.models.baselines import common


class ScoreFusion(nn.Module):
  """Linear(M -> 1, no bias) initialised to 1/M; one modality: as is."""

  @nn.compact
  def __call__(self, scores) -> jax.Array:
    if len(scores) == 1:
      return scores[0]
    stacked = jnp.stack(scores, axis=-1)                         # [B,E,M]
    init = nn.initializers.constant(1.0 / len(scores))
    return nn.Dense(1, use_bias=False, kernel_init=init,
                    name='mix')(stacked)[..., 0]


class EmoEmbs(nn.Module):
  """EmoEmbs baseline; see the module doc.

  ``__call__(batch, train)`` returns ``{'logits': [B,E], 'modality_logits':
  {m: [B,E]} (the per-modality scores), 'stats': {}}``.
  """
  num_emotions: int
  modalities: str = 'tav'
  feature_dims: Tuple[int, int, int] = common.FEATURE_DIMS
  hidden_sizes: Tuple[int, int, int] = (300, 200, 100)
  num_layers: int = 2
  bidirectional: bool = True
  dropout: float = 0.15
  emotion_embeddings: Optional[Any] = None       # [E,G] array-like, frozen
  embedding_dim: int = 300                       # G when learned

  @nn.compact
  def __call__(self, batch: Dict[str, Any],
               train: bool = False) -> Dict[str, Any]:
    mods = common.ordered(self.modalities)
    common.check_batch(batch, mods)
    emb = self._embeddings()                                     # [E,G]
    scores = {}
    for m in mods:
      name = common.NAMES[m]
      hidden = self.hidden_sizes[common.MODALITY_ORDER.index(m)]
      if m == 't':
        if hidden != emb.shape[1]:
          raise ValueError(f'the text hidden size ({hidden}) must equal the '
                           f'emotion embedding width ({emb.shape[1]})')
        vectors = emb
      else:
        vectors = nn.Dense(hidden, name=f'affine_{name}')(emb)  # [E,H]
      x, mask = common.modality_inputs(batch, m)
      r = common.last_real(self._encode(x, mask, hidden, name, train), mask)
      scores[m] = r @ vectors.T                                  # [B,E]
    fused = ScoreFusion(name='fusion')([scores[m] for m in mods])
    return {'logits': fused, 'modality_logits': scores, 'stats': {}}

  def _embeddings(self) -> jax.Array:
    e = self.num_emotions
    if self.emotion_embeddings is None:
      g = self.embedding_dim
      return self.param('emotion_embeddings',
                        nn.initializers.normal(g ** -0.5), (e, g))
    emb = jnp.asarray(self.emotion_embeddings, jnp.float32)
    if emb.ndim != 2 or emb.shape[0] != e:
      raise ValueError(f'emotion_embeddings must be [{e}, G], got '
                       f'{emb.shape}')
    return jax.lax.stop_gradient(emb)

  def _encode(self, x, mask, hidden, name, train) -> jax.Array:
    """Stacked LSTM -> ``[B,L,H]`` (directions summed), zero at padding."""
    lengths = common.lengths_of(mask)
    h = x
    for layer in range(self.num_layers):
      if layer:
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
      lname = f'{name}_lstm{layer}'
      if self.bidirectional:
        out_f, out_b, _, _ = common.BiLSTM(hidden, name=lname)(h, lengths)
        last = layer == self.num_layers - 1
        h = out_f + out_b if last else jnp.concatenate([out_f, out_b], -1)
      else:
        cell = nn.OptimizedLSTMCell(hidden, name=lname)
        h = nn.RNN(cell)(h, seq_lengths=lengths)
      h = jnp.where(mask[..., None], h, 0.0)
    return h
