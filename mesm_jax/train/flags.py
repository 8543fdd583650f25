"""Command-line flags generated from the config fields.

``--dataset`` picks the base config (``mesm_jax.get_config(dataset)``, the
paper's values for that dataset); every field of that ConfigDict is then a
flag of the same name and type: ``--top_p 0.5``, ``--trans_dim 64``,
``--cnn_features 8,16,16,32``, ``--log_mel true``.  Unless ``--batch_size`` is
given, MOSEI and IEMOCAP use the paper's batch: 2 for MESM, 8 for FE2E.
"""

import argparse
from typing import List, Optional, Sequence, Tuple

import ml_collections

import mesm_jax

DATASETS = ('mosei', 'iemocap', 'synthetic')
PAPER_BATCH = {'mesm': 2, 'fe2e': 8}
CHOICES = {'model': ('mesm', 'fe2e'), 'parallel': ('pmap', 'shard_map'),
           'dtype': ('float32', 'bfloat16'),
           'modalities': ('tav', 'ta', 'tv', 'va', 't', 'a', 'v')}
HELP = {
    'dataset': 'mosei | iemocap | synthetic (the embedded demo, no download)',
    'workdir': 'checkpoints, metrics.jsonl, TensorBoard, results.json; a rerun '
               'in the same workdir resumes',
    'eval_only': "evaluate the workdir's best checkpoint on valid and test",
    'top_p': 'nucleus threshold of MESM (paper: MOSEI 0.5, IEMOCAP 0.7)',
    'batch_size': 'global batch (paper: MESM 2, FE2E 8)',
    'text_lr_factor': 'text encoder trains at lr / text_lr_factor',
    'early_stop': 'epochs without a better valid average F1 before stopping',
    'data_dir': 'TFDS data dir (default ~/tensorflow_datasets)',
    'raw_dir': 'raw release to build the TFDS data from (once)',
}


def str2bool(text: str) -> bool:
  if text.lower() in ('1', 'true', 'yes', 'y', 'on'):
    return True
  if text.lower() in ('0', 'false', 'no', 'n', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'expected true/false, got {text!r}')


def _tuple_of(kind):
  def parse(text: str) -> tuple:
    return tuple(kind(v) for v in text.replace(' ', '').split(',') if v)
  return parse


def _flag_type(default):
  if isinstance(default, bool):
    return str2bool
  if isinstance(default, (tuple, list)):
    kind = type(default[0]) if default else str
    return _tuple_of(kind)
  return type(default)


def build_parser(config: ml_collections.ConfigDict) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      description='Train and evaluate MESM / FE2E (Dai et al., NAACL 2021).',
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument('--dataset', choices=DATASETS, default='synthetic',
                      help=HELP['dataset'])
  for name, default in sorted(config.items()):
    if name == 'dataset':
      continue
    flag_type = _flag_type(default)
    kwargs = dict(type=flag_type, default=default,
                  help=HELP.get(name, 'config field'))
    if name in CHOICES:
      kwargs['choices'] = CHOICES[name]
    if isinstance(default, bool):
      kwargs['nargs'] = '?'
      kwargs['const'] = True   # `--eval_only` alone means true
    parser.add_argument(f'--{name}', **kwargs)
  return parser


def _dataset_of(argv: Sequence[str]) -> str:
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument('--dataset', choices=DATASETS, default='synthetic')
  known, _ = pre.parse_known_args(argv)
  return known.dataset


def _given(argv: Sequence[str], name: str) -> bool:
  flag = f'--{name}'
  return any(a == flag or a.startswith(flag + '=') for a in argv)


def parse(argv: Optional[Sequence[str]] = None
          ) -> Tuple[ml_collections.ConfigDict, argparse.Namespace]:
  """Config of ``--dataset`` with every given flag applied."""
  import sys  # pylint: disable=g-import-not-at-top
  argv = list(sys.argv[1:] if argv is None else argv)
  config = mesm_jax.get_config(_dataset_of(argv))
  args = build_parser(config).parse_args(argv)
  with config.unlocked():
    for name in config.keys():
      value = getattr(args, name)
      config[name] = tuple(value) if isinstance(value, list) else value
    if config.dataset in ('mosei', 'iemocap') and not _given(argv, 'batch_size'):
      config.batch_size = PAPER_BATCH[config.model]
  return config, args
