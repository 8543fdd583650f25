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
                feature_dims: Optional[Tuple[int, int, int]] = None
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

  Returns:
    An unbound ``MultimodalModel`` (a baseline for ``configs.BASELINES``).
  """
  configs.check(config)
  if configs.is_baseline(config):
    if feature_dims is None:
      raise ValueError(f'{config.model} is built at the widths of its '
                       'feature data: pass feature_dims (the built data\'s, '
                       'feature_pipeline.feature_dims)')
    return build_baseline_model(config, feature_dims)
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


def build_baseline_model(config, feature_dims: Tuple[int, int, int]
                         ) -> nn.Module:
  """A baseline from the config at the data's feature widths.

  ``feature_dims``: (text, audio, visual) widths of the feature data
  (``feature_pipeline.feature_dims`` of the built data).

  Only LF-TRANS reads the config's Transformer fields (``trans_nlayers``,
  ``trans_ff_dim``, ``dropout``, ``dtype``; its width is each modality's
  feature width); ``baseline_layers`` (0 = published) sets the depth of
  MulT (crossmodal and memory encoders) and of EmoEmbs' LSTMs; everything
  else is the modules' own hyper-parameters (``mesm_jax.models.baselines``).
  No BatchNorm: the step's axis is not needed.

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
  elif config.model == 'mult' and layers:
    kw.update(num_layers=layers, mem_layers=layers)
  elif config.model == 'emoembs' and layers:
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
