"""Pretrained text encoders (BERT / MiniLM, ALBERT) in Flax Linen.

Public API (each takes a config and reads ``text_model``, ``text_checkpoint``
and, for 'scratch', ``scratch_vocab_size``):
- ``get_tokenizer(config)``: ``.encode(texts, max_len) -> (ids, mask)``; the
  tokenisers themselves live in ``data_pipelines.text``, where the TFDS data
  is built.
- ``build_pretrained_encoder(config)``: the Flax module for the checkpoint;
  called as ``enc(ids, mask, train=...) -> (hidden [B, L, D], cls [B, D])``.
- ``load_pretrained_params(config)``: its ``params`` pytree, to put at
  ``params['text_encoder']``.
- ``resolve_checkpoint_dir(config)``: where the checkpoint lives.

See docs/text_encoders.md.
"""

import pathlib

from data_pipelines import text as data_text
from data_pipelines.text import CheckpointNotFoundError
from mesm_jax.text.checkpoint import build_pretrained_encoder
from mesm_jax.text.checkpoint import load_pretrained_params

__all__ = [
    'CheckpointNotFoundError', 'build_pretrained_encoder', 'get_tokenizer',
    'load_pretrained_params', 'resolve_checkpoint_dir',
]


def get_tokenizer(config):
  """The tokeniser of ``config.text_model`` (``data_pipelines.text``)."""
  return data_text.get_tokenizer(config.text_model, config.text_checkpoint,
                                 config.scratch_vocab_size)


def resolve_checkpoint_dir(config) -> pathlib.Path:
  """Local checkpoint directory of ``config.text_model``/``text_checkpoint``."""
  return data_text.resolve_checkpoint_dir(config.text_model,
                                          config.text_checkpoint)
