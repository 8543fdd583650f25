"""The JSON files of a work directory, its own config among them.

A work directory is a local path or a ``gs://`` URL: every path goes through
``data_pipelines.paths`` (etils.epath; on a bucket, TensorFlow's gs://
client), whose rules say what differs (atomic writes, appending to
``metrics.jsonl``).

``<workdir>/config.json`` is written when a run starts (atomically) and is
the base config of every later command in that directory: ``--eval_only``,
a resumed run and ``predict`` need no flag repeated.  Flags given again
override only what they name; an override of a field that changes the
parameters' shapes (widths, model, modalities, text encoder, labels) cannot
use the saved checkpoints and is refused with the field's old and new value.
"""

import json
from typing import Any, Dict, Iterable, List, Optional

from etils import epath
import ml_collections
import numpy as np

from data_pipelines import paths
from mesm_jax import configs

CONFIG_FILE = 'config.json'

# Fields whose value changes the shape (or the meaning) of the parameters.
SHAPE_FIELDS = (
    'model', 'modalities', 'num_emotions', 'cnn_features', 'cnn_fc_dim',
    'trans_dim', 'trans_nlayers', 'trans_nheads', 'trans_ff_dim',
    'text_model', 'text_checkpoint', 'text_max_len', 'scratch_vocab_size',
    'scratch_text_dim', 'scratch_text_layers', 'scratch_text_heads',
    'scratch_text_ff_dim', 'baseline_layers', 'mult_d_model', 'mult_heads',
    'mult_conv_kernels',
    # the baselines' feature source (it sets the text width, 300 / 384)
    'features_pickle', 'openface_dir', 'glove_path')


def path(workdir: str, *names: str) -> epath.Path:
  """``workdir`` joined with ``names`` (local or ``gs://``)."""
  return paths.as_path(workdir).joinpath(*names)


def config_path(workdir: str) -> epath.Path:
  return path(workdir, CONFIG_FILE)


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes ``config`` to ``<workdir>/config.json`` (``write_json_atomic``)."""
  write_json_atomic(config_path(workdir), config.to_dict())


def load_config(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config saved in ``workdir``, or None if it has none.

  The saved values are laid over ``get_config(dataset, model)`` of the saved
  dataset and model, so a field added to the configs since the run keeps its
  default and a field since removed is dropped; lists come back as tuples.
  A workdir from before ``config.json`` existed is read from the config in
  its ``results.json``.
  """
  saved = config_path(workdir)
  results = path(workdir, 'results.json')
  source = saved if saved.is_file() else results
  if not source.is_file():
    return None
  values = read_json(source)
  if source == results:
    values = values.get('config') or {}
  dataset = values.get('dataset')
  config = configs.get_config(
      dataset if dataset in configs.NAMES else 'default',
      values.get('model') if values.get('model') in configs.MODELS else None)
  for name, value in values.items():
    if name in config:
      config[name] = tuple(value) if isinstance(value, list) else value
  return config


def shape_changes(saved: Dict[str, Any], config: Dict[str, Any],
                  names: Iterable[str]) -> List[str]:
  """``field: saved -> given`` for each of ``names`` that changes shapes."""
  out = []
  for name in names:
    if name in SHAPE_FIELDS and name in saved and saved[name] != config[name]:
      out.append(f'{name}: {saved[name]!r} -> {config[name]!r}')
  return out


def to_jsonable(x: Any) -> Any:
  """numpy values -> plain Python; NaN/inf -> None (strict JSON)."""
  if isinstance(x, dict):
    return {str(k): to_jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return to_jsonable(x.tolist())
  if isinstance(x, np.generic):
    x = x.item()
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x


def write_json_atomic(file: paths.PathLike, obj: Any) -> None:
  """JSON to ``file``, whole or not at all (``paths.write_text_atomic``:
  locally a temporary file renamed over it; on a bucket one upload)."""
  paths.write_text_atomic(file, json.dumps(to_jsonable(obj), indent=2,
                                           sort_keys=True))


def read_json(file: paths.PathLike) -> Any:
  """The JSON in ``file``; ValueError naming the file if it is not JSON."""
  file = paths.as_path(file)
  try:
    return json.loads(file.read_text())
  except ValueError as e:
    raise ValueError(f'{file} is not valid JSON ({e})') from e
