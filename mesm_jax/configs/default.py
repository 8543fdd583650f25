"""Base configuration shared by every dataset: the authors' hyperparameters.

The config is flat on purpose: every field is one command-line flag of
``experiments/run.py`` (``--top_p 0.5``, ``--trans_dim 64``, ...).  Dataset
configs (``mosei.py``, ``iemocap.py``, ``synthetic.py``) import this one and
override what differs; ``smoke.py`` shrinks every width for tests and demos.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # --- data --------------------------------------------------------------
  c.dataset = 'synthetic'         # mosei | iemocap | synthetic
  c.data_dir = ''                 # TFDS data dir ('' = ~/tensorflow_datasets)
  c.raw_dir = ''                  # raw release (manual dir for the TFDS build)
  c.num_emotions = 6
  c.img_interval = 500            # ms between sampled video frames
  c.face_size = 48                # face crops are face_size x face_size x 3
  c.sample_rate = 16000
  c.n_mels = 128
  c.chunk_frames = 32             # spectrogram frames per audio chunk
  c.log_mel = False               # faithful: power mel, no log (quirk 5)
  c.face_detector = 'mtcnn'       # mtcnn (paper) | center (centre crop: tests)
  c.text_max_len = 100
  c.max_frames = 64               # cap of face frames per clip (documented rule)
  c.max_chunks = 64               # cap of spectrogram chunks per clip
  c.deterministic_input = True    # fixed input order: a resumed run sees the same batches
  c.shuffle_buffer = 256          # tf.data shuffle buffer (clips)
  c.text_rule = 'last_colon'      # IEMOCAP transcript rule (quirk 6)

  # --- model -------------------------------------------------------------
  c.model = 'mesm'                # mesm | fe2e
  c.modalities = 'tav'            # any non-empty subset of t, a, v
  c.top_p = 0.5                   # nucleus threshold of MESM (>= 1: keep all)
  c.sparse_impl = 'gathered'      # gathered | masked (same numbers)
  c.attention_grad = 'none'       # none (faithful, quirk 1) | scaled (learns)
  c.cnn_features = (64, 128, 256, 512)  # stem/VGG 1-2, stage 3, 4, 5 widths
  c.cnn_fc_dim = 1024
  c.trans_dim = 64
  c.trans_nlayers = 4
  c.trans_nheads = 4
  c.trans_ff_dim = 2048
  c.dropout = 0.1
  c.text_model = 'albert-base-v2'  # albert-base-v2 | minilm | scratch | a dir
  c.text_checkpoint = ''          # explicit HF checkpoint dir (overrides name)
  # Shape of the randomly initialised text encoder (text_model='scratch').
  c.scratch_vocab_size = 30522
  c.scratch_text_dim = 768
  c.scratch_text_layers = 2
  c.scratch_text_heads = 12
  c.scratch_text_ff_dim = 3072
  c.dtype = 'float32'             # compute dtype: float32 | bfloat16
  c.remat = False                 # rematerialise CNN stages (saves memory)
  c.conv_chunk = -1               # dense convs' kernel gradient in chunks of <= this many frames; -1: 16 on CPU, off on GPU/TPU; 0: off

  # --- training ----------------------------------------------------------
  c.epochs = 40
  c.batch_size = 2                # global batch (MESM 2, FE2E 8 in the paper)
  c.eval_batch_size = 8
  c.lr = 5e-5
  c.text_lr_factor = 10.0         # text model at lr / text_lr_factor
  c.weight_decay = 0.0
  c.clip_grad = 0.0               # global-norm clipping; 0 = off
  c.early_stop = 6                # epochs without better valid avg F1
  c.seed = 0
  c.parallel = 'pmap'             # pmap | shard_map
  c.workdir = ''
  c.eval_only = False
  c.checkpoint_every_steps = 200  # latest-state checkpoint interval (steps)
  c.log_every_steps = 50
  return c
