"""Tiny widths for unit tests: same structure as the paper, small numbers.

Not meant to learn anything; every module keeps its shape logic.
"""

from mesm_jax.configs import default


def get_config(model: str = 'mesm'):
  c = default.get_config(model)
  c.cnn_features = (4, 8, 8, 16)
  c.cnn_fc_dim = 16
  c.trans_dim = 8
  c.trans_nlayers = 1
  c.trans_nheads = 2
  c.trans_ff_dim = 16
  c.text_model = 'scratch'
  c.face_detector = 'center'
  c.scratch_vocab_size = 64
  c.scratch_text_dim = 16
  c.scratch_text_layers = 1
  c.scratch_text_heads = 2
  c.scratch_text_ff_dim = 32
  c.text_max_len = 12
  c.max_frames = 4
  c.max_chunks = 4
  c.batch_size = 2
  c.eval_batch_size = 2
  return c
