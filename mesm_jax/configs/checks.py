"""Range checks of config values, before any work starts.

``check(config)`` raises one ``ValueError`` that lists every bad value (a
batch of 0 clips, negative epochs, a dropout of 1, an unknown ``init``,
...).  The command line runs it right after parsing the flags, the training
loop before it builds anything; what needs the model code (widths that fit
together, modalities, ``conv_chunk``) is checked by ``mesm_jax.build_model``.
"""

from typing import List

from mesm_jax.configs.default import CHOICES

POSITIVE_INTS = (
    'batch_size', 'eval_batch_size', 'epochs', 'num_emotions', 'img_interval',
    'max_frames', 'max_chunks', 'shuffle_buffer', 'cnn_fc_dim', 'trans_dim',
    'trans_nlayers', 'trans_nheads', 'trans_ff_dim', 'scratch_vocab_size',
    'scratch_text_dim', 'scratch_text_layers', 'scratch_text_heads',
    'scratch_text_ff_dim', 'checkpoint_every_steps', 'log_every_steps',
    'synthetic_clips', 'keep_checkpoints', 'max_text_feats',
    'max_audio_feats', 'max_vision_feats')
NON_NEGATIVE = ('early_stop', 'clip_grad', 'weight_decay', 'baseline_layers')
POSITIVE = ('lr', 'text_lr_factor', 'top_p')


def problems(config) -> List[str]:
  """Every value of ``config`` that is out of its range, as a sentence."""
  out = []
  for name in POSITIVE_INTS:
    if name in config and not config[name] >= 1:
      out.append(f'{name} must be at least 1, got {config[name]}')
  for name in NON_NEGATIVE:
    if name in config and not config[name] >= 0:
      out.append(f'{name} must be 0 or more, got {config[name]}')
  for name in POSITIVE:
    if name in config and not config[name] > 0:
      out.append(f'{name} must be positive, got {config[name]}')
  if not 0 <= config.dropout < 1:
    out.append(f'dropout must be in [0, 1), got {config.dropout}')
  if config.text_max_len < 2:
    out.append(f'text_max_len must be at least 2 ([CLS] and [SEP]), got '
               f'{config.text_max_len}')
  if any(not w >= 1 for w in config.cnn_features):
    out.append(f'cnn_features must be positive widths, got '
               f'{tuple(config.cnn_features)}')
  if 'init' in config and config.init not in CHOICES['init']:
    out.append(f"init must be one of {CHOICES['init']}, got {config.init!r}")
  return out


def check(config) -> None:
  """Raises a ValueError naming every out-of-range value of ``config``."""
  found = problems(config)
  if found:
    raise ValueError('bad config values:\n  ' + '\n  '.join(found))
