"""Checkpoint resolution and the errors of a checkpoint that does not fit.

No test touches the network: names are resolved with HF_HUB_OFFLINE=1 against a
temporary Hugging Face cache.
"""

import json
import pathlib
import shutil
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import mesm_jax
from mesm_jax import text
from mesm_jax.text import checkpoint
from data_pipelines.text import hub

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'text'
TENSOR = 'albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight'


@pytest.fixture
def albert_dir(tmp_path):
  target = tmp_path / 'tiny_albert'
  shutil.copytree(FIXTURES / 'tiny_albert', target)
  return target


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
  cache = tmp_path / 'hub'
  cache.mkdir()
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  monkeypatch.setenv('HF_HUB_CACHE', str(cache))
  monkeypatch.delenv(hub.DOWNLOAD_ENV, raising=False)
  return cache


def _config(**overrides):
  config = mesm_jax.get_config()
  config.update(overrides)
  return config


def _edit_config_json(directory, **fields):
  path = directory / 'config.json'
  hf = json.loads(path.read_text())
  hf.update(fields)
  path.write_text(json.dumps(hf))


def test_missing_tensor_is_named(albert_dir):
  state = load_file(albert_dir / 'model.safetensors')
  del state[TENSOR]
  save_file(state, albert_dir / 'model.safetensors')
  with pytest.raises(checkpoint.CheckpointError) as err:
    checkpoint.load_checkpoint(albert_dir)
  message = str(err.value)
  assert 'missing tensor' in message and TENSOR[len('albert.'):] in message
  assert 'model.safetensors' in message


def test_shape_mismatch_says_expected_and_found(albert_dir):
  _edit_config_json(albert_dir, intermediate_size=50)  # the weights have 48
  with pytest.raises(checkpoint.CheckpointError) as err:
    checkpoint.load_checkpoint(albert_dir)
  message = str(err.value)
  # HF Linear layout [out, in]: found (48, 32), expected (50, 32).
  assert 'ffn.weight' in message and '(48, 32)' in message
  assert 'expected (50, 32)' in message


def test_unknown_architecture(albert_dir):
  _edit_config_json(albert_dir, model_type='roberta',
                    architectures=['RobertaModel'])
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"unsupported model_type 'roberta'.*albert.*bert"):
    checkpoint.load_checkpoint(albert_dir)


def test_unknown_activation(albert_dir):
  _edit_config_json(albert_dir, hidden_act='quick_gelu')
  with pytest.raises(checkpoint.CheckpointError, match='quick_gelu'):
    checkpoint.load_checkpoint(albert_dir)


def test_no_weights_file(albert_dir):
  (albert_dir / 'model.safetensors').unlink()
  with pytest.raises(checkpoint.CheckpointError, match='no model.safetensors'):
    checkpoint.load_checkpoint(albert_dir)


def test_pytorch_bin_without_torch(albert_dir, monkeypatch):
  (albert_dir / 'model.safetensors').unlink()
  (albert_dir / 'pytorch_model.bin').write_bytes(b'not read')
  monkeypatch.setitem(sys.modules, 'torch', None)  # import torch -> ImportError
  with pytest.raises(checkpoint.CheckpointError,
                     match='pytorch_model.bin is a PyTorch pickle.*torch'):
    checkpoint.load_checkpoint(albert_dir)


def test_sharded_safetensors(albert_dir):
  state = load_file(albert_dir / 'model.safetensors')
  names = sorted(state)
  shards = {'model-00001-of-00002.safetensors': names[::2],
            'model-00002-of-00002.safetensors': names[1::2]}
  for shard, keys in shards.items():
    save_file({k: state[k] for k in keys}, albert_dir / shard)
  weight_map = {k: shard for shard, keys in shards.items() for k in keys}
  (albert_dir / 'model.safetensors.index.json').write_text(
      json.dumps({'weight_map': weight_map}))
  (albert_dir / 'model.safetensors').unlink()
  _, params = checkpoint.load_checkpoint(albert_dir)
  _, expected = checkpoint.load_checkpoint(FIXTURES / 'tiny_albert')
  np.testing.assert_array_equal(params['embeddings']['word']['embedding'],
                                expected['embeddings']['word']['embedding'])


def test_missing_checkpoint_offline_says_how_to_get_it(empty_hub_cache):
  del empty_hub_cache
  config = _config(text_model='albert-base-v2')
  with pytest.raises(text.CheckpointNotFoundError) as err:
    text.build_pretrained_encoder(config)
  message = str(err.value)
  assert 'hf download albert-base-v2' in message
  assert '--text_checkpoint DIR' in message and hub.DOWNLOAD_ENV in message


def test_name_resolves_from_hub_cache(empty_hub_cache):
  # The layout huggingface_hub writes: refs/main -> snapshots/<commit>/files.
  repo = empty_hub_cache / 'models--albert--albert-base-v2'
  commit = 'a' * 40
  shutil.copytree(FIXTURES / 'tiny_albert', repo / 'snapshots' / commit)
  (repo / 'refs').mkdir()
  (repo / 'refs' / 'main').write_text(commit)
  config = _config(text_model='albert-base-v2')  # legacy name -> albert/...
  assert text.resolve_checkpoint_dir(config) == repo / 'snapshots' / commit
  assert text.build_pretrained_encoder(config).hidden_size == 32
  assert text.get_tokenizer(config).name == 'albert-base-v2'


def test_explicit_directories():
  config = _config(text_model='minilm',
                   text_checkpoint=str(FIXTURES / 'tiny_bert'))
  assert text.resolve_checkpoint_dir(config) == FIXTURES / 'tiny_bert'
  config = _config(text_model=str(FIXTURES / 'tiny_albert'))
  assert text.build_pretrained_encoder(config).cfg.model_type == 'albert'


def test_bad_directories(tmp_path):
  with pytest.raises(text.CheckpointNotFoundError, match='not a directory'):
    text.resolve_checkpoint_dir(_config(text_checkpoint=str(tmp_path / 'no')))
  with pytest.raises(text.CheckpointNotFoundError, match='no config.json'):
    text.resolve_checkpoint_dir(_config(text_checkpoint=str(tmp_path)))
  with pytest.raises(ValueError, match='scratch'):
    text.build_pretrained_encoder(_config(text_model='scratch'))


def test_scratch_with_checkpoint_is_a_conflict():
  config = _config(text_model='scratch',
                   text_checkpoint=str(FIXTURES / 'tiny_albert'))
  for fn in (text.get_tokenizer, text.resolve_checkpoint_dir):
    with pytest.raises(ValueError, match='conflicts with text_checkpoint'):
      fn(config)


def test_legacy_gamma_beta_names(tmp_path):
  target = tmp_path / 'tiny_bert'
  shutil.copytree(FIXTURES / 'tiny_bert', target)
  state = load_file(target / 'model.safetensors')
  renamed = {k.replace('LayerNorm.weight', 'LayerNorm.gamma')
              .replace('LayerNorm.bias', 'LayerNorm.beta'): v
             for k, v in state.items()}
  assert renamed.keys() != state.keys()
  save_file(renamed, target / 'model.safetensors')
  _, params = checkpoint.load_checkpoint(target)
  _, expected = checkpoint.load_checkpoint(FIXTURES / 'tiny_bert')
  np.testing.assert_array_equal(params['layer_1']['output_norm']['scale'],
                                expected['layer_1']['output_norm']['scale'])
