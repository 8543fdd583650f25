"""FE2E and MESM: text, audio and visual branches with late fusion.

Axis letters:
  B : clips;  F : face frames per clip;  C : spectrogram chunks per clip
  E : emotions;  D : trans_dim;  Dq : width of the text CLS

Branches (a subset of 'tav', in that order):
  t  text_encoder(text_ids, text_mask) -> CLS [B,Dq] -> text_head [B,E]
  v  faces [B,F,48,48,3] -> visual_cnn (all B*F frames at once) [B,F,D]
     -> visual_transformer (CLS, frame mask) -> visual_head [B,E]
  a  spec [B,C,128,32] -> [B*C,128,32,1] -> audio_cnn -> audio_transformer
     -> audio_head [B,E]
  fusion: Linear(M -> 1, no bias) over the stacked logits (one branch: as is)

MESM uses the text CLS of each clip as the attention query q of every frame
and chunk of that clip (sparse stages 3-5 of both CNNs).
"""

from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.models.cnn import FrameCNN
from mesm_jax.models.fusion import LateFusion
from mesm_jax.models.transformer import SequenceTransformer

MODALITY_ORDER = 'tav'
BRANCHES = {'v': ('visual', 'faces', 'face_mask'),
            'a': ('audio', 'spec', 'spec_mask')}
REQUIRED = {'t': ('text_ids', 'text_mask'), 'v': ('faces', 'face_mask'),
            'a': ('spec', 'spec_mask')}


def check_batch(batch: Dict[str, Any], modalities: str) -> None:
  """Clear error when a modality's arrays are missing from the batch."""
  for m in modalities:
    missing = [k for k in REQUIRED[m] if k not in batch]
    if missing:
      raise KeyError(f'modality {m!r} needs batch keys {missing}; the batch '
                     f'has {sorted(batch)} (see the batch contract in '
                     'docs/design.md)')


class MultimodalModel(nn.Module):
  """FE2E (``model='fe2e'``) or MESM (``'mesm'``); see module doc.

  The fields but ``text_encoder``, ``axis_name`` are config fields of the
  same name and meaning (``mesm_jax.configs``; ``build_model`` reads them
  from a config).  ``__call__(batch, train)`` returns ``{'logits': [B,E],
  'modality_logits': {m: [B,E]}, 'stats': {name: scalar}}``; ``stats``
  holds, for MESM, the fraction of each sparse stage's positions kept by
  the nucleus, averaged over real frames (``kept_<v|a>_stage<s>``).
  """
  modalities: str
  num_emotions: int
  text_encoder: Optional[nn.Module] = None
  model: str = 'fe2e'
  top_p: float = 1.0
  sparse_impl: str = 'gathered'
  attention_grad: str = 'none'
  cnn_features: tuple = (64, 128, 256, 512)
  cnn_fc_dim: int = 1024
  trans_dim: int = 64
  trans_nlayers: int = 4
  trans_nheads: int = 4
  trans_ff_dim: int = 2048
  dropout: float = 0.1
  axis_name: Optional[str] = None
  dtype: Any = 'float32'
  remat: bool = False
  conv_chunk: int = -1

  @property
  def sparse(self) -> bool:
    return self.model == 'mesm'

  @nn.compact
  def __call__(self, batch: Dict[str, jax.Array],
               train: bool = False) -> Dict[str, Any]:
    check_batch(batch, self.modalities)
    logits, stats, q = {}, {}, None
    clip_weight = self._clip_weight(batch)
    if 't' in self.modalities:
      _, cls = self.text_encoder(batch['text_ids'], batch['text_mask'],
                                 train=train)
      q = cls
      logits['t'] = nn.Dense(self.num_emotions, name='text_head')(
          cls.astype(jnp.float32))
    for m in 'av':
      if m in self.modalities:
        logits[m], branch_stats = self._branch(m, batch, clip_weight, q, train)
        stats.update(branch_stats)
    ordered = [logits[m] for m in MODALITY_ORDER if m in logits]
    fused = LateFusion(name='fusion')(ordered)
    return {'logits': fused, 'modality_logits': logits, 'stats': stats}

  def _clip_weight(self, batch) -> jax.Array:
    some = batch['text_ids'] if 'text_ids' in batch else (
        batch['faces'] if 'faces' in batch else batch['spec'])
    b = some.shape[0]
    return jnp.asarray(batch.get('clip_mask', jnp.ones((b,), bool)), bool)

  def _branch(self, m, batch, clip_weight, q, train):
    """One visual/audio branch: CNN on all frames, Transformer, head."""
    name, key, mask_key = BRANCHES[m]
    x = batch[key]
    if m == 'a':
      x = x[..., None]                                        # channel axis
    b, f = x.shape[:2]
    frame_mask = jnp.asarray(batch[mask_key], bool) & clip_weight[:, None]
    weight = frame_mask.reshape(b * f).astype(jnp.float32)
    q_frames = None if q is None else jnp.repeat(q, f, axis=0)
    cnn = FrameCNN(tuple(self.cnn_features), self.cnn_fc_dim,
                   self.trans_dim, self.sparse, float(self.top_p),
                   self.sparse_impl, self.attention_grad, self.axis_name,
                   jnp.dtype(self.dtype), bool(self.remat), self.conv_chunk,
                   name=f'{name}_cnn')
    # Padded frames enter as zeros (their content, even NaN, cannot leak
    # into values or gradients) and leave as zeros.
    frames = x.reshape((b * f,) + x.shape[2:])
    frames = jnp.where(weight.reshape((-1,) + (1,) * (x.ndim - 2)) > 0,
                       frames, 0)
    feats, frame_stats = cnn(frames, weight, q_frames, train)
    seq = jnp.where(frame_mask[..., None], feats.reshape(b, f, -1), 0)
    encoder = SequenceTransformer(self.trans_nlayers, self.trans_nheads,
                                  self.trans_ff_dim, self.dropout,
                                  jnp.dtype(self.dtype),
                                  name=f'{name}_transformer')
    cls = encoder(seq, frame_mask, train)
    logits = nn.Dense(self.num_emotions, name=f'{name}_head')(
        cls.astype(jnp.float32))
    denom = jnp.maximum(weight.sum(), 1.0)
    stats = {f'kept_{m}_{k}': (v * weight).sum() / denom
             for k, v in frame_stats.items()}
    return logits, stats
