"""Configs and command-line flags: help texts, the paper's batch, fast --help.

Nothing here starts JAX: the flags are built from ``mesm_jax.configs`` alone.
"""

import json
import pathlib
import re
import subprocess
import sys

import ml_collections
import pytest

import mesm_jax
from mesm_jax import configs
from mesm_jax.train import flags

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _all_fields():
  fields = set()
  for name in configs.NAMES:
    fields |= set(configs.get_config(name).keys())
  return fields


# ---------------------------------------------------------------- configs


def test_every_field_of_every_config_has_a_real_help_text():
  generic = {'', 'config field', 'todo', 'tbd'}
  for name in configs.NAMES:
    for model in configs.MODELS:
      for field in configs.get_config(name, model).keys():
        text = configs.HELP.get(field, '')
        assert text.strip().lower() not in generic, (name, field)
        assert len(text.split()) >= 4, (field, text)
  assert set(configs.HELP) == _all_fields(), 'help for a field that is gone'


def test_choices_are_the_values_the_code_accepts():
  from data_pipelines import faces  # pylint: disable=g-import-not-at-top
  from data_pipelines.readers import iemocap  # pylint: disable=g-import-not-at-top
  from mesm_jax.models import baselines, sparse  # pylint: disable=g-import-not-at-top
  from mesm_jax.text import checkpoint  # pylint: disable=g-import-not-at-top
  # The model code's registries have an implementation for every name.
  assert set(configs.CHOICES['sparse_impl']) == set(sparse.STAGES)
  assert set(configs.CHOICES['dtype']) == set(checkpoint.DTYPES)
  for name in configs.BASELINES:   # raises ValueError for a name it lacks
    baselines.build_baseline(name, 6)
  # The data side (which imports nothing of mesm_jax) names its own.
  assert set(configs.CHOICES['face_detector']) == set(faces.DETECTORS)
  assert set(configs.CHOICES['text_rule']) == set(iemocap.TEXT_RULES)
  for name, values in configs.CHOICES.items():
    for config_name in configs.NAMES:
      assert configs.get_config(config_name)[name] in values, (config_name,
                                                               name)


def test_every_config_field_is_read_by_the_library():
  """No dead field: each one appears as ``config.<field>`` outside configs/
  or is a field of the model that ``build_model`` reads by name."""
  from mesm_jax import models  # pylint: disable=g-import-not-at-top
  sources = [p for p in (ROOT / 'mesm_jax').rglob('*.py')
             if 'configs' not in p.parts]
  text = '\n'.join(p.read_text() for p in sources)
  unread = [f for f in sorted(_all_fields())
            if not re.search(rf"\bconfig\.(get\(')?{f}\b", text)
            and f not in models.CONFIG_FIELDS]
  assert not unread
  assert {'model', 'top_p', 'trans_dim', 'dtype'} <= set(models.CONFIG_FIELDS)


def test_paper_batch_per_model_is_in_the_configs():
  for dataset in ('mosei', 'iemocap', 'default'):
    assert configs.get_config(dataset).batch_size == 2
    mesm = configs.get_config(dataset, 'mesm')
    fe2e = configs.get_config(dataset, 'fe2e')
    assert (mesm.model, mesm.batch_size) == ('mesm', 2)
    assert (fe2e.model, fe2e.batch_size) == ('fe2e', 8)
  assert mesm_jax.get_config('iemocap', 'fe2e').batch_size == 8
  with pytest.raises(ValueError, match='unknown model'):
    configs.get_config('mosei', 'mesn')


# ---------------------------------------------------------------- flags


def test_card_command_parses_to_the_papers_mosei_settings():
  config, args = flags.parse(['--dataset', 'mosei', '--top_p', '0.5'])
  assert config.dataset == 'mosei' and config.top_p == 0.5
  assert config.model == 'mesm' and config.batch_size == 2
  assert config.lr == 5e-5 and config.text_lr_factor == 10
  assert config.early_stop == 6 and config.epochs == 40
  assert args.workdir == '' and args.eval_only is False
  given, _ = flags.parse(['--dataset', 'iemocap', '--model=fe2e',
                          '--batch_size=4'])
  assert given.batch_size == 4


@pytest.mark.parametrize('dataset', ['mosei', 'iemocap', 'synthetic'])
@pytest.mark.parametrize('model', ['mesm', 'fe2e'])
def test_command_line_gives_the_python_config(dataset, model):
  config, _ = flags.parse([f'--dataset={dataset}', '--model', model])
  assert config.to_dict() == configs.get_config(dataset, model).to_dict()


def test_every_config_field_is_a_flag_and_run_flags_are_not_fields():
  base = configs.get_config('mosei')
  parser = flags.build_parser(base)
  names = {a.dest for a in parser._actions}  # pylint: disable=protected-access
  assert set(base.keys()) | {'workdir', 'eval_only'} <= names
  config, args = flags.parse([
      '--dataset', 'mosei', '--cnn_features', '8,16,16,32', '--log_mel',
      'true', '--eval_only', '--modalities', 'tv', '--trans_nheads', '2',
      '--parallel', 'shard_map', '--workdir', '/tmp/w'])
  assert config.cnn_features == (8, 16, 16, 32)
  assert config.log_mel is True and args.eval_only is True
  assert config.modalities == 'tv' and config.trans_nheads == 2
  assert args.workdir == '/tmp/w'
  assert 'workdir' not in config and 'eval_only' not in config
  with pytest.raises(SystemExit):
    flags.parse(['--dataset', 'mosei', '--modalities', 'xyz'])
  with pytest.raises(SystemExit):
    flags.parse(['--dataset', 'mosei', '--n_mels', '64'])  # no such field


def test_parsed_config_is_frozen():
  config, _ = flags.parse(['--dataset', 'synthetic'])
  assert isinstance(config, ml_collections.FrozenConfigDict)
  with pytest.raises(AttributeError):
    config.eval_batch_size = 3


def _run_help(code: str) -> subprocess.CompletedProcess:
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, timeout=120,
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_run_py_help_lists_every_flag_without_tensorflow_or_jax():
  """``experiments/run.py --help`` as a script, then what it imported."""
  proc = _run_help(
      'import json, runpy, sys\n'
      "sys.argv = ['experiments/run.py', '--help']\n"
      'try:\n'
      "  runpy.run_path('experiments/run.py', run_name='__main__')\n"
      'except SystemExit as e:\n'
      '  assert e.code == 0, e.code\n'
      "heavy = sorted(m for m in ('jax', 'jaxlib', 'tensorflow', 'flax',\n"
      "                           'tensorflow_datasets') if m in sys.modules)\n"
      "print('HEAVY', json.dumps(heavy))\n")
  out = proc.stdout
  assert json.loads(out.rsplit('HEAVY', 1)[1]) == []
  text = ' '.join(out.split())  # argparse wraps the help texts
  assert '--top_p TOP_P ' + ' '.join(configs.HELP['top_p'].split()) in text
  assert '--keep_freed_memory' in text and 'glibc' in text
  for flag in ('--workdir', '--eval_only', '--dataset', '--model'):
    assert flag in text
  for name in _all_fields():
    assert f'--{name}' in text


def test_flags_module_imports_neither_tensorflow_nor_jax():
  _run_help(
      'import sys\n'
      'from mesm_jax.train import flags\n'
      "config, args = flags.parse(['--dataset', 'iemocap', '--model', 'fe2e'])\n"
      'assert config.batch_size == 8\n'
      "assert 'tensorflow' not in sys.modules and 'jax' not in sys.modules\n")


def test_bad_values_stop_before_any_work(capsys):
  """A batch of 0, negative epochs, dropout 1: one clear usage error."""
  argv = ['--batch_size', '0', '--epochs', '-1', '--dropout', '1',
          '--lr', '0', '--max_frames', '0', '--early_stop', '-2']
  with pytest.raises(SystemExit) as exit_info:
    flags.parse(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  for text in ('--batch_size must be at least 1, got 0',
               '--epochs must be at least 1, got -1',
               '--dropout must be in [0, 1), got 1.0',
               '--lr must be positive, got 0.0',
               '--max_frames must be at least 1, got 0',
               '--early_stop must be 0 or more, got -2'):
    assert text in err
  # The paper's configs pass; the loop checks configs built in Python too.
  for name in configs.NAMES:
    for model in configs.MODELS:
      assert not configs.checks.problems(configs.get_config(name, model))
  config = mesm_jax.get_config('smoke')
  config.eval_batch_size = 0
  with pytest.raises(ValueError, match='eval_batch_size must be at least 1'):
    configs.check(config)


def test_a_config_file_of_ones_own(tmp_path):
  # A file with get_config(), as flax / big_vision take one; flags (either
  # spelling) override its fields; fields it lacks keep its dataset's.
  path = tmp_path / 'my_config.py'
  path.write_text(
      'import mesm_jax\n\n'
      'def get_config(arg=None):\n'
      "  c = mesm_jax.get_config('mosei', 'fe2e')\n"
      '  c.trans_dim = 32\n'
      "  c.top_p = 0.3 if arg == 'low' else 0.6\n"
      '  return c\n')
  config, _ = flags.parse(['--config', str(path), '--config.epochs=3',
                           '--lr', '1e-4'])
  assert (config.dataset, config.model, config.batch_size) == ('mosei',
                                                                'fe2e', 8)
  assert (config.trans_dim, config.top_p, config.epochs, config.lr) == (
      32, 0.6, 3, 1e-4)
  config, _ = flags.parse(['--config', f'{path}:low'])
  assert config.top_p == 0.3
  # A partial file: the rest from get_config(dataset, model).
  partial = tmp_path / 'partial.py'
  partial.write_text("def get_config():\n  return {'dataset': 'iemocap', "
                     "'model': 'mesm', 'trans_dim': 16}\n")
  config, _ = flags.parse(['--config', str(partial)])
  assert (config.top_p, config.trans_dim, config.max_frames) == (0.7, 16, 48)


@pytest.mark.parametrize('text,error', [
    (None, 'no file'),
    ('x = 1\n', 'defines no get_config'),
    ("def get_config():\n  return {'trans_dims': 8}\n",
     r"unknown config fields \['trans_dims'\]"),
])
def test_a_bad_config_file_is_a_usage_error(tmp_path, capsys, text, error):
  path = tmp_path / 'c.py'
  if text is not None:
    path.write_text(text)
  with pytest.raises(SystemExit) as exit_info:
    flags.parse(['--config', str(path)])
  assert exit_info.value.code == 2
  assert re.search(error, capsys.readouterr().err)


def test_a_config_file_over_a_used_workdir(tmp_path, capsys):
  from mesm_jax.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / 'run'
  workdir_lib.save_config(str(workdir), configs.get_config('mosei', 'fe2e'))
  path = tmp_path / 'c.py'
  path.write_text("import mesm_jax\n\ndef get_config():\n"
                  "  c = mesm_jax.get_config('mosei', 'fe2e')\n"
                  "  c.epochs = 2\n  return c\n")
  config, _ = flags.parse(['--workdir', str(workdir), '--config', str(path)])
  assert config.epochs == 2 and config.model == 'fe2e'
  path.write_text(path.read_text().replace('c.epochs = 2', 'c.trans_dim = 8'))
  with pytest.raises(SystemExit):
    flags.parse(['--workdir', str(workdir), '--config', str(path)])
  assert 'trans_dim: 64 -> 8' in capsys.readouterr().err
