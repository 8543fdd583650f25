"""FE2E and MESM as Flax Linen modules, built from a flat config.

    model = build_model(mesm_jax.get_config('smoke'))
    variables = model.init(jax.random.key(0), batch, train=False)
    out = model.apply(variables, batch, train=True,
                      rngs={'dropout': key}, mutable=['batch_stats'])
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.models.attention import CrossModalAttention
from mesm_jax.models.batchnorm import MaskedBatchNorm
from mesm_jax.models.cnn import FrameCNN
from mesm_jax.models.conv import check_chunk
from mesm_jax.models.init import INITS, pytorch_init
from mesm_jax.models.multimodal import MultimodalModel
from mesm_jax.models.sparse import gathered_stage, masked_stage
from mesm_jax.models.text import ScratchTextEncoder, build_text_encoder

MODELS = ('fe2e', 'mesm')
DTYPES = ('float32', 'bfloat16')


def _check_config(config) -> None:
  """Clear errors for settings that cannot build a model."""
  mods = config.modalities
  if config.model not in MODELS:
    raise ValueError(f'model must be one of {MODELS}, got {config.model!r}')
  if not mods or set(mods) - set('tav') or len(set(mods)) != len(mods):
    raise ValueError(f"modalities must be a non-empty subset of 'tav' without "
                     f'repeats, got {mods!r}')
  if config.model == 'mesm' and 't' not in mods:
    raise ValueError(f"MESM needs the text modality 't' (its attention query); "
                     f'got modalities={mods!r}. Use model=fe2e or add t.')
  if config.sparse_impl not in ('masked', 'gathered'):
    raise ValueError(f"sparse_impl must be 'masked' or 'gathered', got "
                     f'{config.sparse_impl!r}')
  if config.attention_grad not in ('none', 'scaled'):
    raise ValueError(f"attention_grad must be 'none' or 'scaled', got "
                     f'{config.attention_grad!r}')
  if config.dtype not in DTYPES:
    raise ValueError(f'dtype must be one of {DTYPES}, got {config.dtype!r}')
  if len(config.cnn_features) != 4:
    raise ValueError('cnn_features needs 4 widths (stem/VGG1-2, stage 3, 4, '
                     f'5), got {config.cnn_features!r}')
  check_chunk(int(config.conv_chunk))
  if config.model == 'mesm' and not config.top_p > 0:
    raise ValueError(f'top_p must be positive, got {config.top_p}')


def build_model(config, text_encoder: Optional[nn.Module] = None,
                axis_name: Optional[str] = None) -> MultimodalModel:
  """FE2E or MESM from a flat config (``mesm_jax.get_config(...)``).

  Args:
    config: the flat ConfigDict (model, modalities, top_p, sparse_impl, ...).
    text_encoder: a text encoder module; default ``build_text_encoder``.
    axis_name: named axis over which BatchNorm statistics are shared (the
      trainer's pmap/shard_map axis, e.g. ``'batch'``).

  Returns:
    An unbound ``MultimodalModel``.
  """
  _check_config(config)
  if 't' in config.modalities and text_encoder is None:
    text_encoder = build_text_encoder(config)
  return MultimodalModel(
      modalities=config.modalities, num_emotions=config.num_emotions,
      text_encoder=text_encoder if 't' in config.modalities else None,
      sparse=config.model == 'mesm', top_p=float(config.top_p),
      sparse_impl=config.sparse_impl, attention_grad=config.attention_grad,
      cnn_features=tuple(config.cnn_features), cnn_fc_dim=config.cnn_fc_dim,
      trans_dim=config.trans_dim, trans_nlayers=config.trans_nlayers,
      trans_nheads=config.trans_nheads, trans_ff_dim=config.trans_ff_dim,
      dropout=config.dropout, axis_name=axis_name,
      dtype=jnp.dtype(config.dtype), remat=bool(config.remat),
      conv_chunk=int(config.conv_chunk))


# The text model's part, which trains at lr / text_lr_factor: the encoder
# and its classifier, as in the original's two Adam parameter groups.
TEXT_GROUP = ('text_encoder', 'text_head')


def param_labels(params):
  """Pytree like ``params``: ``'text'`` under ``TEXT_GROUP``, else ``'default'``.

  Accepts the ``params`` collection (or a variables dict holding it).
  """
  def label(path, _):
    keys = [getattr(k, 'key', None) for k in path]
    return 'text' if set(TEXT_GROUP) & set(keys[:2]) else 'default'
  return jax.tree_util.tree_map_with_path(label, params)


__all__ = [
    'CrossModalAttention', 'FrameCNN', 'INITS', 'MaskedBatchNorm',
    'MultimodalModel', 'ScratchTextEncoder', 'build_model',
    'build_text_encoder', 'gathered_stage', 'masked_stage', 'param_labels',
    'pytorch_init',
]
