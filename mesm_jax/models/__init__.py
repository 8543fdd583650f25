"""FE2E and MESM as Flax Linen modules, built from a flat config.

``build_model`` also builds the paper's baselines (``config.model`` one of
``configs.BASELINES``: 'lf_lstm', 'lf_trans', 'mult', 'emoembs'), which
read feature sequences instead of faces, spectrograms and tokens.

    model = build_model(mesm_jax.get_config('smoke'))
    variables = model.init(jax.random.key(0), batch, train=False)
    out = model.apply(variables, batch, train=True,
                      rngs={'dropout': key}, mutable=['batch_stats'])
"""

import dataclasses
import functools
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mesm_jax import configs
from mesm_jax.configs import BASELINES, DTYPES, END_TO_END, INITS, MODELS
from mesm_jax.models.attention import CrossModalAttention
from mesm_jax.models.baselines import build_baseline
from mesm_jax.models.baselines.lf_trans import (
    check_feature_dims as check_lf_trans_dims)
from mesm_jax.models.batchnorm import MaskedBatchNorm
from mesm_jax.models.cnn import FrameCNN
from mesm_jax.models.conv import resolve_chunk
from mesm_jax.models.init import pytorch_init
from mesm_jax.models.multimodal import MultimodalModel
from mesm_jax.models.sparse import gathered_stage, masked_stage
from mesm_jax.models.text import ScratchTextEncoder, build_text_encoder

# MultimodalModel's fields that are config fields of the same name: what
# build_model reads from the config.
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(MultimodalModel)
                      if f.name in configs.FIELDS and f.name != 'conv_chunk')


def build_model(config, text_encoder: Optional[nn.Module] = None,
                axis_name: Optional[str] = None,
                platform: Optional[str] = None,
                feature_dims: Optional[Tuple[int, int, int]] = None,
                emotion_vectors: Optional[Any] = None
                ) -> MultimodalModel:
  """FE2E or MESM from a flat config (``mesm_jax.get_config(...)``).

  Args:
    config: the flat ConfigDict; ``configs.check`` runs first, then the
      model's fields of the same name (``CONFIG_FIELDS``) are read from it.
    text_encoder: a text encoder module; default ``build_text_encoder``.
    axis_name: named axis over which BatchNorm statistics are shared (the
      trainer's pmap/shard_map axis, e.g. ``'batch'``).
    platform: the platform the model is compiled for ('cpu', 'gpu', 'tpu');
      it resolves ``conv_chunk=-1`` (``conv.resolve_chunk``).  None: the
      default backend's, asked now.
    feature_dims: a baseline's (text, audio, visual) feature widths, those
      of its data (``build_baseline_model``); FE2E and MESM ignore them.
    emotion_vectors: EmoEmbs' frozen emotion-word vectors ``[E, G]``
      (``build_baseline_model``); the other models ignore them.

  Returns:
    An unbound ``MultimodalModel`` (a baseline for ``configs.BASELINES``).
  """
  configs.check(config)
  if configs.is_baseline(config):
    if feature_dims is None:
      raise ValueError(f'{config.model} is built at the widths of its '
                       'feature data: pass feature_dims (the built data\'s, '
                       'feature_pipeline.feature_dims)')
    return build_baseline_model(config, feature_dims, emotion_vectors)
  if 't' in config.modalities and text_encoder is None:
    text_encoder = build_text_encoder(config)
  fields = {name: config[name] for name in CONFIG_FIELDS}
  return MultimodalModel(
      **fields, text_encoder=text_encoder if 't' in config.modalities
      else None, axis_name=axis_name,
      conv_chunk=resolve_chunk(int(config.conv_chunk), platform))


FACE = (48, 48, 3)     # a face crop, RGB
CHUNK = (128, 32)      # a spectrogram chunk: mel bins x frames


def batch_spec(config, batch_size: int, frames: Optional[int] = None,
               chunks: Optional[int] = None
               ) -> Dict[str, jax.ShapeDtypeStruct]:
  """What FE2E and MESM take (``mesm_jax.input_pipeline``'s batch contract),
  as shapes: ``batch_size`` clips of ``frames`` face frames and ``chunks``
  spectrogram chunks (default ``max_frames``, ``max_chunks``: the largest
  length bucket)."""
  b, e, length = batch_size, config.num_emotions, config.text_max_len
  f = config.max_frames if frames is None else frames
  c = config.max_chunks if chunks is None else chunks
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))
  return {
      'text_ids': spec((b, length), 'int32'),
      'text_mask': spec((b, length), 'int32'),
      'faces': spec((b, f) + FACE, 'float32'),
      'face_mask': spec((b, f), 'bool'),
      'spec': spec((b, c) + CHUNK, 'float32'),
      'spec_mask': spec((b, c), 'bool'),
      'labels': spec((b, e), 'float32'),
      'clip_mask': spec((b,), 'bool'),
  }


def abstract_variables(config, model: nn.Module,
                       sample: Optional[Dict[str, Any]] = None
                       ) -> Dict[str, Any]:
  """``model.init``'s variables (``params``, ``batch_stats``) as shapes: a
  restore target for which no weight is drawn or read.

  ``sample``: a batch of the model's inputs (arrays or shapes; its first
  clip is used); default a one-clip ``batch_spec`` (FE2E / MESM).
  """
  if sample is None:
    sample = batch_spec(config, 1, 1, 1)
  first = {k: jax.ShapeDtypeStruct((1,) + tuple(v.shape[1:]), v.dtype)
           for k, v in sample.items()}
  init = functools.partial(model.init, train=False)
  return jax.eval_shape(
      lambda batch: init({'params': jax.random.PRNGKey(0),
                          'dropout': jax.random.PRNGKey(0)}, batch), first)


def build_baseline_model(config, feature_dims: Tuple[int, int, int],
                         emotion_vectors: Optional[Any] = None
                         ) -> nn.Module:
  """A baseline from the config at the data's feature widths.

  ``feature_dims``: (text, audio, visual) widths of the feature data
  (``feature_pipeline.feature_dims`` of the built data).
  ``emotion_vectors``: EmoEmbs only, required there: the ``[E, G]`` word
  vectors of its emotion words (``train.data.Data.emotion_vectors``: GloVe
  with ``glove_path``, else the MiniLM substitute), kept frozen as a
  constant of the module (not a parameter: no gradient, no optimizer
  state); its text LSTM's hidden size is G, as the original requires.

  LF-TRANS reads the config's Transformer fields (``trans_nlayers``,
  ``trans_ff_dim``, ``dropout``, ``dtype``; its width is each modality's
  feature width); MulT its ``mult_*`` fields;
  ``baseline_layers`` (0 = published) sets the depth of MulT's crossmodal
  encoders (its memory encoders: max(layers, 3), as ``MULTModel``) and of
  EmoEmbs' LSTMs; everything else is the modules' own hyper-parameters
  (``mesm_jax.models.baselines``).  No BatchNorm: the step's axis is not
  needed.

  Raises:
    ValueError: a width the model cannot use (LF-TRANS: a modality's heads
      must divide its width), naming the modality, the width and the fix.
  """
  kw = {'feature_dims': tuple(int(d) for d in feature_dims)}
  layers = int(config.get('baseline_layers', 0))
  if config.model == 'lf_trans':
    kw.update(trans_nlayers=int(config.trans_nlayers),
              trans_ff_dim=int(config.trans_ff_dim),
              dropout=float(config.dropout), dtype=jnp.dtype(config.dtype))
  elif config.model == 'mult':
    kw.update(
        d_model=int(config.mult_d_model), num_heads=int(config.mult_heads),
        conv_kernels=tuple(int(k) for k in config.mult_conv_kernels),
        attn_dropout=float(config.mult_attn_dropout),
        relu_dropout=float(config.mult_relu_dropout),
        res_dropout=float(config.mult_res_dropout),
        embed_dropout=float(config.mult_embed_dropout),
        out_dropout=float(config.mult_out_dropout),
        attn_mask=bool(config.mult_attn_mask))
    if layers:
      kw.update(num_layers=layers)   # memory: max(layers, mem_layers=3)
  elif config.model == 'emoembs':
    if emotion_vectors is None:
      raise ValueError('emoembs is built with the frozen word vectors of its '
                       'emotion words: pass emotion_vectors [E, G] '
                       '(train.data.Data.emotion_vectors)')
    vectors = np.asarray(emotion_vectors, np.float32)
    if vectors.ndim != 2:
      raise ValueError(f'emotion_vectors must be [E, G], got {vectors.shape}')
    # A tuple: hashable and compared by value, like every module field.
    kw['emotion_embeddings'] = tuple(map(tuple, vectors.tolist()))
    kw['hidden_sizes'] = (vectors.shape[1], 200, 100)
    if layers:
      kw.update(num_layers=layers)
  if config.model == 'lf_trans':   # before any compile: a clear error
    check_lf_trans_dims(kw['feature_dims'], config.modalities)
  return build_baseline(config.model, int(config.num_emotions),
                        config.modalities, **kw)


# The text model's part, which trains at lr / text_lr_factor: the encoder
# and its classifier, as in the original's two Adam parameter groups.
TEXT_GROUP = ('text_encoder', 'text_head')


def param_labels(params):
  """Pytree like ``params``: ``'text'`` under ``TEXT_GROUP``, else ``'default'``.

  The baselines have neither subtree: all their parameters are ``'default'``
  (one learning rate, ``lr``).

  Accepts the ``params`` collection (or a variables dict holding it).
  """
  def label(path, _):
    keys = [getattr(k, 'key', None) for k in path]
    return 'text' if set(TEXT_GROUP) & set(keys[:2]) else 'default'
  return jax.tree_util.tree_map_with_path(label, params)


__all__ = [
    'CrossModalAttention', 'FrameCNN', 'INITS', 'MaskedBatchNorm',
    'BASELINES', 'MultimodalModel', 'ScratchTextEncoder', 'build_model',
    'abstract_variables', 'batch_spec', 'build_baseline_model',
    'build_text_encoder', 'gathered_stage', 'masked_stage', 'param_labels',
    'pytorch_init',
]
