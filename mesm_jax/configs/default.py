"""Base configuration shared by every dataset: the authors' hyperparameters.

The config is flat on purpose: every field is one command-line flag of
``experiments/run.py`` (``--top_p 0.5``, ``--trans_dim 64``, ...).  Dataset
configs (``mosei.py``, ``iemocap.py``, ``synthetic.py``) import this one and
override what differs; ``smoke.py`` shrinks every width for tests and demos.

``HELP`` says what each field does and in which unit; it is the flag's
``--help`` text and the reference for the fields (a test checks that every
field of every named config has one).  ``CHOICES`` lists the values of the
fields that take one of a few names.

The batch size depends on the model: the paper trains MESM with batches of 2
and FE2E with batches of 8 (``PAPER_BATCH_SIZE``), so ``get_config(model)``
sets both ``model`` and ``batch_size``.  The config is only ever written
while it is built (here, by the dataset configs, by the command line or by a
caller before training); the training loop freezes it and keeps every value
it derives (such as the evaluation batch rounded to the devices) in its own
state.
"""

import ml_collections

# The baselines of Tables 3 and 4, trained on feature sequences
# (mesm_jax.models.baselines).  The paper does not give their batch size: 32
# is this project's choice for all four (MulT's public default is 24).
BASELINES = ('lf_lstm', 'lf_trans', 'mult', 'emoembs')
MODELS = ('mesm', 'fe2e') + BASELINES
PAPER_BATCH_SIZE = {'mesm': 2, 'fe2e': 8, **{b: 32 for b in BASELINES}}

CHOICES = {
    'dataset': ('mosei', 'iemocap', 'synthetic', 'manifest'),
    'model': MODELS,
    'modalities': ('tav', 'ta', 'tv', 'va', 't', 'a', 'v'),
    'sparse_impl': ('gathered', 'masked'),
    'attention_grad': ('none', 'scaled'),
    'dtype': ('float32', 'bfloat16'),
    'parallel': ('pmap', 'shard_map'),
    'face_detector': ('mtcnn', 'center'),
    'text_rule': ('last_colon', 'full'),
    'init': ('pytorch', 'flax'),
}

HELP = {
    # --- data --------------------------------------------------------------
    'dataset': 'mosei | iemocap | synthetic (generated clips in the MOSEI '
               'layout, no download) | manifest (your own clips, --manifest); '
               'picks the TFDS data and the emotions',
    'data_dir': "TFDS data directory, a folder or gs://bucket/path; '' = "
                '~/tensorflow_datasets. The prepared data is built there once '
                'and read by every run',
    'raw_dir': 'directory of the raw release (or the authors\' processed '
               'folders, docs/data.md) to build the TFDS data from; only read '
               "while building; '' for synthetic: <data_dir>/synthetic_raw "
               '(for a gs:// data_dir a local folder, docs/training.md)',
    'manifest': "dataset 'manifest' only: CSV or JSONL file, one row per "
                'clip (clip_id, video, audio, start, end, text, split, labels; '
                'docs/data.md); its label set sets num_emotions',
    'splits_dir': 'directory with train.txt, valid.txt, test.txt (clip ids, '
                  "one a line) to build the TFDS data from; '' = the "
                  "authors' split files (synthetic: the raw dir's splits/). "
                  'Data built from other split files is not reused',
    'num_emotions': 'number of emotion classes E, the width of the logits '
                    '(MOSEI and IEMOCAP: 6)',
    'img_interval': 'milliseconds between two sampled video frames (paper: '
                    '500 ms; 7500 ms is the original loader\'s MOSEI rate). '
                    'Changing it builds other TFDS data',
    'log_mel': "false (faithful, quirk 5): power mel spectrogram; true: "
               'log(mel + 1e-6). Changing it builds other TFDS data',
    'face_detector': 'mtcnn (the paper\'s MTCNN face crops) | center (the '
                     'centre crop of every frame, no detector: fast, for '
                     'tests). Changing it builds other TFDS data',
    'text_max_len': 'tokens per utterance, special tokens included; longer '
                    'transcripts are cut, shorter ones padded (paper: 100). '
                    'Changing it builds other TFDS data',
    'max_frames': 'at most this many face frames per clip (frames), kept '
                  'evenly spaced over the clip; batches use 3 length buckets '
                  'up to it',
    'max_chunks': 'at most this many spectrogram chunks per clip (a chunk: '
                  '32 spectrogram frames, 0.4 s at 16 kHz), kept evenly '
                  'spaced over the clip',
    'deterministic_input': 'true: tf.data keeps a fixed order, so a resumed '
                           'run sees the same batches as an uninterrupted '
                           'one; false: possibly faster, order may vary',
    'shuffle_buffer': 'tf.data shuffle buffer of the training split (clips)',
    'text_rule': 'IEMOCAP transcripts: last_colon (faithful, quirk 6: the '
                 'words after the last colon of the line) | full (everything '
                 'after the [start-end]: prefix). Changing it builds other '
                 'TFDS data',
    'synthetic_clips': 'synthetic dataset only: number of generated clips '
                       '(70/15/15 % train/valid/test)',
    'max_text_feats': 'baselines only: at most this many word vectors per '
                      'clip (the first ones); shorter texts are padded and '
                      'masked (MulT\'s MOSEI text length: 50)',
    'max_audio_feats': 'baselines only: at most this many acoustic frames '
                       '(400 ms each) per clip, kept evenly spaced over the '
                       'clip; padded and masked up to it',
    'max_vision_feats': 'baselines only: at most this many facial action '
                        'unit frames per clip, kept evenly spaced over the '
                        'clip; padded and masked up to it',
    'features_pickle': 'baselines only: a MulT / MMSA feature pickle, or '
                       "a folder of the MESM authors' IEMOCAP features "
                       '({train,valid,test}_{text,audio,video}_features.pt), '
                       'joined by clip id with the labels and splits of '
                       "--raw_dir ('' = the synthetic features of --dataset "
                       'synthetic)',
    'openface_dir': 'baselines only: folder of OpenFace 2.0 CSVs, one '
                    '<video id>.csv per video (or below it): with it (and no '
                    '--features_pickle) the features are computed from the '
                    'raw clips of --raw_dir (the 35 action units in each '
                    "clip's time span, acoustic features of its wav, word "
                    "vectors); clips that fail are skipped and reported; '' "
                    '= not this source',
    'glove_path': 'baselines with --openface_dir: GloVe text file (.txt, '
                  '.gz or .zip, 300-d) of the word vectors; \'\' = the '
                  'bundled MiniLM input embeddings (384-d), and the '
                  'baselines are built for 384-d text',
    'beam_options': "'' = build locally with worker processes; else Apache "
                    'Beam pipeline options, e.g. runner=DirectRunner,'
                    'direct_num_workers=4 or runner=DataflowRunner,project=...,'
                    'region=...,temp_location=gs://...; needs pip install -e '
                    "'.[beam]'",
    # --- model -------------------------------------------------------------
    'model': 'mesm (sparse CNN stages 3-5 after cross-modal attention; needs '
             'the text modality) | fe2e (dense CNNs) | the baselines on '
             'feature sequences: lf_lstm | lf_trans | mult | emoembs. Sets the '
             'batch size: MESM 2, FE2E 8 (paper), baselines 32',
    'modalities': 'modalities used: any non-empty subset of t (text), a '
                  '(audio), v (visual faces)',
    'top_p': 'MESM\'s nucleus threshold p: each frame of a sparse stage '
             'keeps its most attended positions until their attention sums '
             'to p (paper: MOSEI 0.5, IEMOCAP 0.7); >= 1 keeps every one',
    'sparse_impl': 'gathered (work follows the nucleus capacity) | masked '
                   '(dense reference); the same numbers',
    'attention_grad': 'none (faithful, quirk 1: the cross-modal attention '
                      'gets no gradient and never learns) | scaled (kept '
                      'features are scaled by their attention: it learns)',
    'baseline_layers': 'baselines only: layers of MulT\'s crossmodal and '
                       'memory Transformers and of EmoEmbs\' LSTMs; 0 = '
                       'each baseline\'s published depth (MulT 5, memory 3 '
                       'or more; EmoEmbs 2). LF-TRANS reads trans_nlayers',
    'cnn_features': 'channels of the visual and audio CNNs: stem/VGG blocks '
                    '1-2, stage 3, stage 4, stage 5 (4 widths)',
    'cnn_fc_dim': 'width of the fully connected layer after each CNN',
    'trans_dim': 'model width of the per-modality Transformers',
    'trans_nlayers': 'layers of each per-modality Transformer',
    'trans_nheads': 'attention heads of each Transformer layer',
    'trans_ff_dim': 'hidden width of the Transformers\' feed-forward blocks',
    'dropout': 'dropout rate of the Transformers and of the scratch text '
               'encoder (0..1)',
    'text_model': 'text encoder: albert-base-v2 (paper) | minilm (bundled, '
                  'offline) | scratch (randomly initialised, scratch_* shape) '
                  '| a checkpoint directory | a Hugging Face name in the '
                  'local cache (docs/text_encoders.md). Its token ids are '
                  'part of the TFDS data',
    'text_checkpoint': 'Hugging Face checkpoint directory of the text '
                       "encoder; overrides text_model's lookup ('' = none)",
    'scratch_vocab_size': 'text_model=scratch: vocabulary size of the '
                          'random text encoder (token ids below it)',
    'scratch_text_dim': 'text_model=scratch: model width of the random text '
                        'encoder (the width of its CLS feature)',
    'scratch_text_layers': 'text_model=scratch: Transformer layers of the '
                           'random text encoder',
    'scratch_text_heads': 'text_model=scratch: attention heads of each of '
                          'its layers',
    'scratch_text_ff_dim': 'text_model=scratch: hidden width of its '
                           'feed-forward blocks',
    'dtype': 'compute dtype: float32 | bfloat16 (parameters stay float32, '
             'the loss is computed in float32)',
    'remat': 'rematerialise the CNN stages in the backward pass: less '
             'memory, more compute',
    'init': 'initial parameters: pytorch (faithful: the original\'s PyTorch '
            'defaults, e.g. Linear and conv weights and biases uniform in '
            '+-1/sqrt(fan_in), self-attention in-projection xavier uniform, '
            'CLS N(0, 1); docs/training.md) | flax (Flax\'s defaults: LeCun '
            'normal kernels, zero biases, CLS N(0, 0.02)). The text encoder '
            'and the checkpoint layout are the same either way',
    'conv_chunk': 'dense convolutions compute their kernel gradient in chunks '
                  'of at most this many frames; -1: 16 on CPU, one piece on '
                  'GPU/TPU; 0: one piece. The same numbers either way',
    # --- training ----------------------------------------------------------
    'epochs': 'most training epochs (passes over the training split)',
    'batch_size': 'global training batch, clips over every device and host '
                  '(paper: MESM 2, FE2E 8; set with --model unless given)',
    'eval_batch_size': 'global evaluation batch (clips); rounded up to a '
                       'multiple of the devices used',
    'lr': 'Adam learning rate of every parameter except the text model\'s',
    'text_lr_factor': 'the text encoder and the text head train at lr / '
                      'text_lr_factor (paper: 10)',
    'weight_decay': 'L2 term weight_decay * param added to the gradient '
                    'before Adam (torch.optim.Adam\'s, not AdamW); 0 = off',
    'clip_grad': 'clip the whole gradient to this global L2 norm before Adam; '
                 '0 = off',
    'early_stop': 'stop after this many epochs without a better validation '
                  'average F1; 0 = never',
    'seed': 'random seed of the initial parameters, dropout and the training '
            'order (epoch e is shuffled with seed + e)',
    'parallel': 'how the step is mapped over devices: pmap | shard_map (the '
                'same numbers)',
    'checkpoint_every_steps': 'save the latest state every this many training '
                              'steps inside an epoch (and at each epoch end)',
    'log_every_steps': 'log the mean training metrics (and check the loss '
                       'for NaN) every this many steps',
    'keep_checkpoints': 'latest-state checkpoints kept (newest first); a '
                        'resume falls back to an older one if the newest '
                        'cannot be restored. The best checkpoint is kept '
                        'besides',
}


def get_config(model: str = 'mesm') -> ml_collections.ConfigDict:
  """The authors' settings for ``model`` ('mesm', 'fe2e' or a baseline)."""
  c = ml_collections.ConfigDict()

  # --- data --------------------------------------------------------------
  c.dataset = 'synthetic'
  c.data_dir = ''
  c.raw_dir = ''
  c.splits_dir = ''
  c.manifest = ''
  c.num_emotions = 6
  c.img_interval = 500
  c.log_mel = False
  c.face_detector = 'mtcnn'
  c.text_max_len = 100
  c.max_frames = 64
  c.max_chunks = 64
  c.deterministic_input = True
  c.shuffle_buffer = 256
  c.text_rule = 'last_colon'
  c.beam_options = ''
  c.max_text_feats = 50
  c.max_audio_feats = 100
  c.max_vision_feats = 100
  c.features_pickle = ''
  c.openface_dir = ''
  c.glove_path = ''
  c.baseline_layers = 0

  # --- model -------------------------------------------------------------
  c.model = model
  c.modalities = 'tav'
  c.top_p = 0.5
  c.sparse_impl = 'gathered'
  c.attention_grad = 'none'
  c.cnn_features = (64, 128, 256, 512)
  c.cnn_fc_dim = 1024
  c.trans_dim = 64
  c.trans_nlayers = 4
  c.trans_nheads = 4
  c.trans_ff_dim = 2048
  c.dropout = 0.1
  c.text_model = 'albert-base-v2'
  c.text_checkpoint = ''
  c.scratch_vocab_size = 30522
  c.scratch_text_dim = 768
  c.scratch_text_layers = 2
  c.scratch_text_heads = 12
  c.scratch_text_ff_dim = 3072
  c.dtype = 'float32'
  c.remat = False
  c.conv_chunk = -1
  c.init = 'pytorch'

  # --- training ----------------------------------------------------------
  c.epochs = 40
  c.batch_size = PAPER_BATCH_SIZE[model]
  c.eval_batch_size = 8
  c.lr = 5e-5
  c.text_lr_factor = 10.0
  c.weight_decay = 0.0
  c.clip_grad = 0.0
  c.early_stop = 6
  c.seed = 0
  c.parallel = 'pmap'
  c.checkpoint_every_steps = 200
  c.log_every_steps = 50
  c.keep_checkpoints = 2
  return c
