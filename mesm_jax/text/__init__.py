"""Pretrained text encoders (BERT / MiniLM, ALBERT) in Flax Linen, and tokenisers.

Public API:
- ``get_tokenizer(config)``: ``.encode(texts, max_len) -> (ids, mask)``.
- ``build_pretrained_encoder(config)``: the Flax module for
  ``config.text_model`` / ``config.text_checkpoint``; called as
  ``enc(ids, mask, train=...) -> (hidden [B, L, D], cls [B, D])``.
- ``load_pretrained_params(config)``: its ``params`` pytree, to put at
  ``params['text_encoder']``.
- ``resolve_checkpoint_dir(config)``: where the checkpoint lives.

See docs/text_encoders.md. The encoder functions import flax/jax lazily, so
data pipelines can import ``get_tokenizer`` without them.
"""

from mesm_jax.text.hub import CheckpointNotFoundError, resolve_checkpoint_dir
from mesm_jax.text.tokenizer import get_tokenizer

__all__ = [
    'CheckpointNotFoundError', 'build_pretrained_encoder', 'get_tokenizer',
    'load_pretrained_params', 'resolve_checkpoint_dir',
]


def build_pretrained_encoder(config):
  from mesm_jax.text import checkpoint  # pylint: disable=g-import-not-at-top
  return checkpoint.build_pretrained_encoder(config)


def load_pretrained_params(config):
  from mesm_jax.text import checkpoint  # pylint: disable=g-import-not-at-top
  return checkpoint.load_pretrained_params(config)
