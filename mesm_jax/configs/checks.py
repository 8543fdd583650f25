"""The one validation of a config, before any work starts.

``check(config)`` raises one ``ValueError`` that lists every bad value (a
batch of 0 clips, negative epochs, a dropout of 1, a name that is not one of
a field's choices, MESM without text, ...).  Every entry point runs it: the
command line right after parsing the flags (as a usage error), the training
loop and ``mesm_jax.build_model`` before they build anything, the
ahead-of-time compiler.
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
NON_NEGATIVE = ('early_stop', 'clip_grad', 'weight_decay', 'baseline_layers',
                'plateau_patience')
POSITIVE = ('lr', 'text_lr_factor', 'top_p', 'mult_d_model', 'mult_heads')
DROPOUTS = ('dropout', 'mult_attn_dropout', 'mult_relu_dropout',
            'mult_res_dropout', 'mult_embed_dropout', 'mult_out_dropout')


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
  for name in DROPOUTS:
    if name in config and not 0 <= config[name] < 1:
      out.append(f'{name} must be in [0, 1), got {config[name]}')
  if 'plateau_factor' in config and not 0 < config.plateau_factor < 1:
    out.append(f'plateau_factor must be in (0, 1), got '
               f'{config.plateau_factor}')
  if config.text_max_len < 2:
    out.append(f'text_max_len must be at least 2 ([CLS] and [SEP]), got '
               f'{config.text_max_len}')
  if any(not w >= 1 for w in config.cnn_features):
    out.append(f'cnn_features must be positive widths, got '
               f'{tuple(config.cnn_features)}')
  for name, choices in CHOICES.items():
    if name != 'modalities' and name in config and (
        config[name] not in choices):
      out.append(f'{name} must be one of {choices}, got {config[name]!r}')
  out += _model_problems(config)
  return out


def _model_problems(config) -> List[str]:
  """What keeps a model from being built: modalities, widths, MESM's text."""
  out = []
  mods = config.modalities
  if not mods or set(mods) - set('tav') or len(set(mods)) != len(mods):
    out.append(f"modalities must be a non-empty subset of 'tav' without "
               f'repeats, got {mods!r}')
  elif config.model == 'mesm' and 't' not in mods:
    out.append(f"MESM needs the text modality 't' (its attention query); got "
               f'modalities={mods!r}: use model=fe2e or add t')
  if len(config.cnn_features) != 4:
    out.append('cnn_features needs 4 widths (stem/VGG1-2, stage 3, 4, 5), '
               f'got {tuple(config.cnn_features)!r}')
  if 'mult_heads' in config and config.mult_heads >= 1 and (
      config.mult_d_model % config.mult_heads):
    out.append(f'mult_d_model ({config.mult_d_model}) must be a multiple of '
               f'mult_heads ({config.mult_heads})')
  kernels = tuple(config.get('mult_conv_kernels', (1, 1, 1)))
  if len(kernels) != 3 or any(k < 1 or k % 2 == 0 for k in kernels):
    out.append('mult_conv_kernels needs 3 odd kernels (text, audio, visual), '
               f'got {kernels!r}')
  if config.conv_chunk < -1:
    out.append('conv_chunk must be -1 (auto: 16 on CPU, off on GPU/TPU), 0 '
               f'(off) or a positive frame count, got {config.conv_chunk}')
  return out


def check(config) -> None:
  """Raises a ValueError naming every out-of-range value of ``config``."""
  found = problems(config)
  if found:
    raise ValueError('bad config values:\n  ' + '\n  '.join(found))
