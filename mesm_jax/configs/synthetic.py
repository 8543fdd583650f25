"""The embedded synthetic dataset: generated raw files in the MOSEI layout.

  python experiments/run.py --dataset synthetic

Narrow widths so that the whole path (raw -> TFDS -> tf.data -> train ->
eval) finishes on a 2-core CPU in minutes; the labels are learnable from each
modality.  The figure it reaches is recorded in the README.
"""

from mesm_jax.configs import default


def get_config(model: str = 'mesm'):
  c = default.get_config(model)
  c.dataset = 'synthetic'
  c.top_p = 0.5
  c.cnn_features = (8, 16, 16, 32)
  c.cnn_fc_dim = 64
  c.trans_dim = 32
  c.trans_nlayers = 1
  c.trans_nheads = 4
  c.trans_ff_dim = 64
  c.text_model = 'minilm'
  c.text_max_len = 24
  c.max_frames = 8
  c.max_chunks = 8
  c.batch_size = 8
  c.eval_batch_size = 16
  c.lr = 1e-3
  c.deterministic_input = True    # the demo gives the same numbers each run
  c.epochs = 8
  c.early_stop = 4
  return c
