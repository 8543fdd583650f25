"""Hugging Face checkpoint directory -> Flax text encoder and its params.

A checkpoint directory holds ``config.json`` and the weights as
``model.safetensors`` (read with the safetensors numpy API, no torch), a
sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` (read only
when torch is importable).  Tensor names follow Hugging Face's ``BertModel`` /
``AlbertModel``; a ``bert.`` / ``albert.`` prefix (``*ForMaskedLM``,
``*ForPreTraining`` checkpoints) is stripped, legacy LayerNorm names
``gamma`` / ``beta`` are read as ``weight`` / ``bias``, and tensors the
encoder does not use (pooler, MLM / SOP heads, ``position_ids`` buffers) are
ignored.
"""

import json
import pathlib
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from data_pipelines.text import hub
from mesm_jax.text import albert
from mesm_jax.text import bert
from mesm_jax.text import layers

ENCODERS = {'bert': bert.BertEncoder, 'albert': albert.AlbertEncoder}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# (flax path, HF name, transform of the HF array into the flax layout)
ParamSpec = tuple[tuple[str, ...], str, Callable[[np.ndarray], np.ndarray]]
_same = lambda a: a
_transpose = lambda a: a.T  # torch Linear stores [out, in]; flax Dense [in, out]


class CheckpointError(ValueError):
  """A checkpoint does not fit the encoder (missing tensor, wrong shape, ...)."""


# ----------------------------------------------------------------- config.json


def read_hf_config(directory: pathlib.Path) -> dict:
  path = pathlib.Path(directory) / 'config.json'
  if not path.is_file():
    raise CheckpointError(f'{directory}: no config.json.')
  with path.open(encoding='utf-8') as f:
    return json.load(f)


def encoder_config(hf: dict, source: str = 'config.json') -> layers.EncoderConfig:
  """``layers.EncoderConfig`` from a parsed HF ``config.json``."""
  model_type = hf.get('model_type')
  if model_type not in ENCODERS:
    raise CheckpointError(
        f'{source}: unsupported model_type {model_type!r} (architectures '
        f'{hf.get("architectures")}); supported: {sorted(ENCODERS)}.')
  if hf.get('position_embedding_type', 'absolute') != 'absolute':
    raise CheckpointError(f'{source}: only absolute position embeddings are '
                          f'supported, got {hf["position_embedding_type"]!r}.')
  try:
    return layers.EncoderConfig(
        model_type=model_type, vocab_size=hf['vocab_size'],
        hidden_size=hf['hidden_size'], num_layers=hf['num_hidden_layers'],
        num_heads=hf['num_attention_heads'],
        intermediate_size=hf['intermediate_size'], hidden_act=hf['hidden_act'],
        max_position_embeddings=hf['max_position_embeddings'],
        type_vocab_size=hf.get('type_vocab_size', 2),
        layer_norm_eps=hf.get('layer_norm_eps', 1e-12),
        hidden_dropout=hf.get('hidden_dropout_prob', 0.1),
        attention_dropout=hf.get('attention_probs_dropout_prob', 0.1),
        embedding_size=hf.get('embedding_size', hf['hidden_size'])
        if model_type == 'albert' else hf['hidden_size'],
        num_hidden_groups=hf.get('num_hidden_groups', 1),
        inner_group_num=hf.get('inner_group_num', 1))
  except KeyError as e:
    raise CheckpointError(f'{source}: missing field {e.args[0]!r}.') from None
  except ValueError as e:
    raise CheckpointError(f'{source}: {e}') from None


def build_encoder(cfg: layers.EncoderConfig,
                  dtype: Any = jnp.float32) -> nn.Module:
  return ENCODERS[cfg.model_type](cfg, dtype)


def _dtype(config) -> Any:
  name = getattr(config, 'dtype', 'float32')
  if name not in DTYPES:
    raise ValueError(f'config.dtype must be one of {sorted(DTYPES)}, '
                     f'got {name!r}.')
  return DTYPES[name]


def build_pretrained_encoder(config) -> nn.Module:
  """The (uninitialised) Flax encoder for ``config.text_model``'s checkpoint."""
  directory = hub.resolve_checkpoint_dir(config.text_model,
                                         config.text_checkpoint)
  cfg = encoder_config(read_hf_config(directory), str(directory / 'config.json'))
  return build_encoder(cfg, _dtype(config))


# ----------------------------------------------------------------- tensors


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  return dict(safetensors.numpy.load_file(str(path)))


def _read_torch_bin(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointError(
        f'{path} is a PyTorch pickle and torch is not installed. Install torch '
        'to read it, or use a checkpoint with model.safetensors (most Hugging '
        'Face repos have one).') from None
  state = torch.load(str(path), map_location='cpu', weights_only=True)
  return {k: (v.float() if v.is_floating_point() else v).numpy()
          for k, v in state.items()}


def read_state_dict(directory: pathlib.Path) -> tuple[dict[str, np.ndarray], str]:
  """All tensors of a checkpoint dir, and the file name(s) they came from."""
  directory = pathlib.Path(directory)
  single = directory / 'model.safetensors'
  index = directory / 'model.safetensors.index.json'
  if single.is_file():
    return _read_safetensors(single), str(single)
  if index.is_file():
    with index.open(encoding='utf-8') as f:
      files = sorted(set(json.load(f)['weight_map'].values()))
    state = {}
    for name in files:
      state.update(_read_safetensors(directory / name))
    return state, str(index)
  if (directory / 'pytorch_model.bin').is_file():
    return _read_torch_bin(directory / 'pytorch_model.bin'), str(
        directory / 'pytorch_model.bin')
  raise CheckpointError(f'{directory}: no model.safetensors, '
                        'model.safetensors.index.json or pytorch_model.bin.')


def _legacy_name(name: str) -> str:
  """Old TF-converted checkpoints name LayerNorm params gamma / beta."""
  for old, new in (('.gamma', '.weight'), ('.beta', '.bias')):
    if name.endswith(old):
      return name[:-len(old)] + new
  return name


def normalise_names(state: dict[str, np.ndarray],
                    model_type: str) -> dict[str, np.ndarray]:
  """Drops the ``bert.`` / ``albert.`` prefix of task-head checkpoints and
  renames legacy ``gamma`` / ``beta`` LayerNorm tensors."""
  prefix = model_type + '.'
  if any(k.startswith(prefix) for k in state):
    state = {k[len(prefix):]: v for k, v in state.items()
             if k.startswith(prefix)}
  return {_legacy_name(k): v for k, v in state.items()}


# ----------------------------------------------------------------- name maps


def _embedding_specs() -> Iterator[ParamSpec]:
  for flax_name, hf_name in (('word', 'word_embeddings'),
                             ('position', 'position_embeddings'),
                             ('token_type', 'token_type_embeddings')):
    yield (('embeddings', flax_name, 'embedding'),
           f'embeddings.{hf_name}.weight', _same)
  yield from _norm_specs(('embeddings', 'norm'), 'embeddings.LayerNorm')


def _dense_specs(path: tuple[str, ...], hf: str) -> Iterator[ParamSpec]:
  yield path + ('kernel',), hf + '.weight', _transpose
  yield path + ('bias',), hf + '.bias', _same


def _norm_specs(path: tuple[str, ...], hf: str) -> Iterator[ParamSpec]:
  yield path + ('scale',), hf + '.weight', _same
  yield path + ('bias',), hf + '.bias', _same


def _layer_specs(path: tuple[str, ...],
                 hf_names: dict[str, str]) -> Iterator[ParamSpec]:
  """One TransformerLayer, given the HF name of each of its sub-blocks."""
  for sub in ('query', 'key', 'value', 'out'):
    yield from _dense_specs(path + ('attention', sub), hf_names[sub])
  for sub in ('mlp_in', 'mlp_out'):
    yield from _dense_specs(path + (sub,), hf_names[sub])
  for sub in ('attention_norm', 'output_norm'):
    yield from _norm_specs(path + (sub,), hf_names[sub])


def bert_specs(cfg: layers.EncoderConfig) -> Iterator[ParamSpec]:
  yield from _embedding_specs()
  for i in range(cfg.num_layers):
    hf = f'encoder.layer.{i}.'
    yield from _layer_specs((f'layer_{i}',), {
        'query': hf + 'attention.self.query', 'key': hf + 'attention.self.key',
        'value': hf + 'attention.self.value',
        'out': hf + 'attention.output.dense',
        'attention_norm': hf + 'attention.output.LayerNorm',
        'mlp_in': hf + 'intermediate.dense', 'mlp_out': hf + 'output.dense',
        'output_norm': hf + 'output.LayerNorm'})


def albert_specs(cfg: layers.EncoderConfig) -> Iterator[ParamSpec]:
  yield from _embedding_specs()
  yield from _dense_specs(('embedding_projection',),
                          'encoder.embedding_hidden_mapping_in')
  for g in range(cfg.num_hidden_groups):
    for j in range(cfg.inner_group_num):
      hf = f'encoder.albert_layer_groups.{g}.albert_layers.{j}.'
      yield from _layer_specs((f'group_{g}_layer_{j}',), {
          'query': hf + 'attention.query', 'key': hf + 'attention.key',
          'value': hf + 'attention.value', 'out': hf + 'attention.dense',
          'attention_norm': hf + 'attention.LayerNorm', 'mlp_in': hf + 'ffn',
          'mlp_out': hf + 'ffn_output',
          'output_norm': hf + 'full_layer_layer_norm'})


SPECS = {'bert': bert_specs, 'albert': albert_specs}


# ----------------------------------------------------------------- conversion


def expected_shapes(module: nn.Module) -> dict:
  """Param shapes of ``module`` (abstract init: no compute, no memory)."""
  ids = jnp.zeros((1, 2), jnp.int32)
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), ids, ids))
  return abstract['params']


def _lookup(tree: dict, path: tuple[str, ...]):
  for key in path:
    tree = tree[key]
  return tree


def _insert(tree: dict, path: tuple[str, ...], value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def convert_state_dict(state: dict[str, np.ndarray], cfg: layers.EncoderConfig,
                       source: str) -> dict:
  """HF tensors -> Flax ``params`` of ``build_encoder(cfg)``; checks shapes."""
  state = normalise_names(state, cfg.model_type)
  shapes = expected_shapes(build_encoder(cfg))
  params, specs = {}, list(SPECS[cfg.model_type](cfg))
  for path, hf_name, transform in specs:
    if hf_name not in state:
      raise CheckpointError(
          f'{source}: missing tensor {hf_name!r} (needed for {"/".join(path)} '
          f'of the {cfg.model_type} encoder).')
    value = np.asarray(transform(state[hf_name]), np.float32)
    want = tuple(_lookup(shapes, path).shape)
    if value.shape != want:
      hf_want = want[::-1] if transform is _transpose else want
      raise CheckpointError(
          f'{source}: tensor {hf_name!r} has shape {tuple(state[hf_name].shape)}'
          f', expected {hf_want} from config.json.')
    _insert(params, path, value)
  n_expected = len(jax.tree_util.tree_leaves(shapes))
  if len(specs) != n_expected:  # a module/param-map mismatch is a bug here
    raise AssertionError(
        f'param map has {len(specs)} entries, module {n_expected}')
  return params


def load_checkpoint(directory,
                    dtype: Any = jnp.float32) -> tuple[nn.Module, dict]:
  """(encoder module, params) of a HF checkpoint directory."""
  directory = pathlib.Path(directory)
  cfg = encoder_config(read_hf_config(directory), str(directory / 'config.json'))
  state, source = read_state_dict(directory)
  return build_encoder(cfg, dtype), convert_state_dict(state, cfg, source)


def load_pretrained_params(config) -> dict:
  """Params (numpy float32) of ``build_pretrained_encoder(config)``."""
  directory = hub.resolve_checkpoint_dir(config.text_model,
                                         config.text_checkpoint)
  return load_checkpoint(directory, _dtype(config))[1]
