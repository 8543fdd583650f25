"""Text on the data side: tokenisers and locating text checkpoints.

The TFDS builders store token ids with every clip, so tokenising is part of
building the data and must not need the model library, which wraps these
functions for its config and adds the Flax encoders.
"""

from data_pipelines.text.hub import CheckpointNotFoundError
from data_pipelines.text.hub import resolve_checkpoint_dir
from data_pipelines.text.tokenizer import get_tokenizer

__all__ = ['CheckpointNotFoundError', 'get_tokenizer', 'resolve_checkpoint_dir']
