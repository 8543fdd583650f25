"""Command-line flags generated from the config fields.

``--dataset`` and ``--model`` pick the base config,
``mesm_jax.configs.get_config(dataset, model)``: the paper's values for that
dataset and model, the batch size included (MOSEI and IEMOCAP: MESM 2, FE2E
8).  Every field of that ConfigDict is then a flag of the same name and type
(``--top_p 0.5``, ``--trans_dim 64``, ``--cnn_features 8,16,16,32``,
``--log_mel true``); a flag that is given wins over the base config
(``--model fe2e --batch_size 4``).  Each flag's help text is the field's entry
in ``mesm_jax.configs.HELP``, its choices ``mesm_jax.configs.CHOICES``.

``--config my_config.py`` (a file with ``get_config()``, as ml_collections'
``config_flags`` takes one) replaces the named config; the field flags, also
spelled ``--config.<field>=value``, override it as they override a named
one.  A work directory's saved config comes first (a resumed run keeps its
settings); a ``--config`` file given there is applied over it like flags.

``--config``, ``--workdir`` and ``--eval_only`` say where and what to run, not
how to train: they are command-line flags only, returned beside the config.  A
script adds its own flags with ``parents`` (``experiments/run.py``:
``--keep_freed_memory``), so that ``--help`` lists them too.

This module imports ``mesm_jax.configs``, the manifest reader (to size the
labels of ``--dataset manifest``) and the standard library only, so
``--help`` answers without loading TensorFlow or JAX.
"""

import argparse
import importlib.util
import os
import pathlib
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple

import ml_collections

from data_pipelines.readers import manifest as manifest_reader
from mesm_jax import configs
from mesm_jax.train import workdir as workdir_lib

DATASETS = configs.CHOICES['dataset']
RUN_HELP = {
    'config': 'a Python file whose get_config() returns the config (path.py '
              "or path.py:arg, as ml_collections' config_flags); it replaces "
              'the named config of --dataset / --model, and the flags below '
              '(or --config.<field>=value) override its fields',
    'workdir': 'directory of the run (a folder or gs://bucket/path): '
               'config.json, checkpoints, '
               'metrics.jsonl, TensorBoard logs, results.json; a rerun in the '
               "same workdir resumes, with the workdir's saved config (flags "
               'given again override only what they name). '
               "'' = workdirs/<dataset>-<model>-<modalities>-p<top_p>-"
               'seed<seed>',
    'eval_only': "evaluate the workdir's best checkpoint on valid and test "
                 '(eval_results.json) instead of training',
}


def str2bool(text: str) -> bool:
  if text.lower() in ('1', 'true', 'yes', 'y', 'on'):
    return True
  if text.lower() in ('0', 'false', 'no', 'n', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'expected true/false, got {text!r}')


def _tuple_of(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
  def parse_tuple(text: str) -> tuple:
    return tuple(kind(v) for v in text.replace(' ', '').split(',') if v)
  return parse_tuple


def _flag_type(default: Any) -> Callable[[str], Any]:
  if isinstance(default, bool):
    return str2bool
  if isinstance(default, (tuple, list)):
    return _tuple_of(type(default[0]) if default else str)
  return type(default)


def _escape(text: str) -> str:
  """argparse %-formats help texts: a literal '%' must be doubled."""
  return text.replace('%', '%%')


def _add_flag(group, name: str, default: Any, help_text: str) -> None:
  kwargs = dict(type=_flag_type(default), default=default,
                help=_escape(help_text))
  if name in configs.CHOICES:
    kwargs['choices'] = configs.CHOICES[name]
  if isinstance(default, bool):
    kwargs.update(nargs='?', const=True)  # `--eval_only` alone means true
  group.add_argument(f'--{name}', **kwargs)


def build_parser(config: ml_collections.ConfigDict,
                 parents: Sequence[argparse.ArgumentParser] = ()
                 ) -> argparse.ArgumentParser:
  """One flag per field of ``config`` (its value the default), and the run's.

  Args:
    config: the base config (``configs.get_config(dataset, model)``).
    parents: parsers (``add_help=False``) of a script's own flags.

  Returns:
    The parser; ``--help`` lists the run flags, then the config fields.
  """
  parser = argparse.ArgumentParser(
      description='Train and evaluate MESM / FE2E (Dai et al., NAACL 2021).',
      formatter_class=argparse.ArgumentDefaultsHelpFormatter,
      parents=list(parents))
  run = parser.add_argument_group('what to run')
  for name in ('dataset', 'model'):
    _add_flag(run, name, config[name], configs.HELP[name])
  _add_flag(run, 'config', '', RUN_HELP['config'])
  _add_flag(run, 'workdir', '', RUN_HELP['workdir'])
  _add_flag(run, 'eval_only', False, RUN_HELP['eval_only'])
  fields = parser.add_argument_group(
      'config fields (mesm_jax/configs; defaults of the chosen --dataset and '
      '--model)')
  for name, default in sorted(config.items()):
    if name not in ('dataset', 'model'):
      _add_flag(fields, name, default, configs.HELP[name])
  return parser


def _given_names(argv: Sequence[str]) -> List[str]:
  """The flags named on the command line (``--name`` or ``--name=v``)."""
  return [a[2:].split('=', 1)[0] for a in argv if a.startswith('--')]


def _config_dot_flags(argv: Sequence[str]) -> List[str]:
  """``--config.<field>`` (ml_collections' spelling) as ``--<field>``."""
  return [f'--{a[len("--config."):]}' if a.startswith('--config.') else a
          for a in argv]


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """The config of a Python file with ``get_config()``: ``path.py`` or
  ``path.py:arg`` (then ``get_config('arg')``), as ml_collections'
  ``config_flags`` reads one.

  Fields the file's config lacks take the defaults of its ``dataset`` and
  ``model`` (``configs.get_config``); a field no config has is an error.
  """
  path, _, arg = spec.partition(':')
  file = pathlib.Path(path).expanduser()
  if not file.is_file():
    raise ValueError(f'--config {spec}: no file {file} (a Python file '
                     'whose get_config() returns the config)')
  module_spec = importlib.util.spec_from_file_location(
      f'_mesm_config_{file.stem}', file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not callable(getattr(module, 'get_config', None)):
    raise ValueError(f'--config {spec}: {file} defines no get_config()')
  given = module.get_config(arg) if arg else module.get_config()
  given = dict(given.items() if hasattr(given, 'items') else given)
  unknown = sorted(set(given) - set(configs.FIELDS))
  if unknown:
    raise ValueError(f'--config {spec}: unknown config fields {unknown} '
                     '(mesm_jax/configs/default.py lists them)')
  dataset = given.get('dataset', 'default')
  config = configs.get_config(dataset if dataset in configs.NAMES
                              else 'default', given.get('model'))
  for name, value in given.items():
    config[name] = tuple(value) if isinstance(value, list) else value
  return config


def _base_config(argv: Sequence[str]
                 ) -> Tuple[ml_collections.ConfigDict, bool, str]:
  """(base config, whether it is a workdir's saved one, the --config file).

  ``--workdir`` with a ``config.json`` (a run was started there): that
  config; else ``--config FILE`` (``load_config_file``); else
  ``get_config(--dataset, --model)``.  Bad values are left to the parser.
  """
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument('--dataset')
  pre.add_argument('--model')
  pre.add_argument('--workdir', default='')
  pre.add_argument('--config', default='')
  known, _ = pre.parse_known_args(argv)
  if known.workdir:
    saved = workdir_lib.load_config(known.workdir)
    if saved is not None:
      return saved, True, known.config
  if known.config:
    return load_config_file(known.config), False, known.config
  dataset = known.dataset if known.dataset in DATASETS else 'synthetic'
  model = known.model if known.model in configs.MODELS else None
  return configs.get_config(dataset, model), False, ''


def _apply_manifest(parser: argparse.ArgumentParser,
                    config: ml_collections.ConfigDict,
                    argv: Sequence[str]) -> None:
  """``--dataset manifest``: needs ``--manifest``; its labels set E."""
  if not config.manifest:
    parser.exit(2, f'{parser.prog}: error: --dataset manifest needs '
                '--manifest FILE (a CSV or JSONL list of clips, '
                'docs/data.md)\n')
  try:
    names, _ = manifest_reader.label_set(config.manifest)
  except (OSError, ValueError) as e:
    parser.exit(2, f'{parser.prog}: error: --manifest: {e}\n')
  given = any(a == '--num_emotions' or a.startswith('--num_emotions=')
              for a in argv)
  if not given:
    config.num_emotions = len(names)


def parse(argv: Optional[Sequence[str]] = None,
          parents: Sequence[argparse.ArgumentParser] = ()
          ) -> Tuple[ml_collections.FrozenConfigDict, argparse.Namespace]:
  """The config of ``--dataset``/``--model`` (or of ``--config FILE``, or a
  work directory's saved one) with every given flag applied.

  Args:
    argv: the arguments (default ``sys.argv[1:]``).
    parents: parsers of a script's own flags (see ``build_parser``).

  Returns:
    The config, frozen (a write raises), and the parsed namespace, which also
    holds ``workdir``, ``eval_only`` and the ``parents``' flags.
  """
  argv = _config_dot_flags(sys.argv[1:] if argv is None else argv)
  try:
    config, from_workdir, config_file = _base_config(argv)
  except ValueError as e:  # a usage error, as the parser's own (exit 2)
    print(f'{os.path.basename(sys.argv[0])}: error: {e}', file=sys.stderr)
    raise SystemExit(2) from e
  saved = config.to_dict()
  given = _given_names(argv)
  if from_workdir and config_file:  # the file's values, as if all given
    for name, value in load_config_file(config_file).items():
      config[name] = value
    given = list(config.keys())
  parser = build_parser(config, parents)
  args = parser.parse_args(argv)
  for name in config.keys():
    value = getattr(args, name)
    config[name] = tuple(value) if isinstance(value, list) else value
  changes = workdir_lib.shape_changes(saved, config.to_dict(), given)
  if from_workdir and changes:
    parser.exit(2, f'{parser.prog}: error: {args.workdir} was trained with '
                'other parameter shapes; these flags cannot change them: '
                + '; '.join(changes) + ' (use another --workdir)\n')
  if config.dataset == 'manifest':
    _apply_manifest(parser, config, argv)
  bad = configs.checks.problems(config)
  if bad:  # a usage error (exit 2) before anything is loaded or built
    parser.exit(2, f'{parser.prog}: error: bad flag values:\n  ' + '\n  '.join(
        f'--{text}' for text in bad) + '\n')
  return ml_collections.FrozenConfigDict(config), args
