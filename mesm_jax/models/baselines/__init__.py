"""Baselines of the paper's Tables 3 and 4, on hand-crafted feature sequences.

One module per model; all take the batch of ``common`` (``text_feats``,
``audio_feats``, ``vision_feats`` and their masks) and return ``{'logits':
[B,E], 'modality_logits': {m: [B,E]}, 'stats': {}}`` like
``MultimodalModel`` (MulT has no per-modality logits: ``{}``).

  'lf_lstm'  LFLSTM   bidirectional LSTM per modality, late fusion
  'lf_trans' LFTrans  FE2E's Transformer encoder per modality, late fusion
  'mult'     MulT     Tsai et al. 2019, crossmodal Transformers
  'emoembs'  EmoEmbs  Dai et al. 2020, emotion-embedding similarity scores
"""

from mesm_jax.configs import BASELINES
from mesm_jax.models.baselines.common import FEATURE_DIMS, FEATURE_KEYS
from mesm_jax.models.baselines.emoembs import EmoEmbs
from mesm_jax.models.baselines.lf_lstm import LFLSTM
from mesm_jax.models.baselines.lf_trans import LFTrans
from mesm_jax.models.baselines.mult import MulT

# One module per name of ``configs.BASELINES``.
_MODELS = {'lf_lstm': LFLSTM, 'lf_trans': LFTrans, 'mult': MulT,
           'emoembs': EmoEmbs}

__all__ = ['BASELINES', 'FEATURE_DIMS', 'FEATURE_KEYS', 'EmoEmbs', 'LFLSTM',
           'LFTrans', 'MulT', 'build_baseline']


def build_baseline(name: str, num_emotions: int, modalities: str = 'tav',
                   **kw):
  """The baseline ``name`` (one of ``BASELINES``); ``kw`` sets its fields.

  Raises:
    ValueError: an unknown name.
    TypeError: a field the model does not have (e.g. ``trans_nlayers`` for
      'mult').
  """
  if name not in _MODELS:
    raise ValueError(f'unknown baseline {name!r}; choose from {BASELINES}')
  return _MODELS[name](num_emotions=num_emotions, modalities=modalities, **kw)
