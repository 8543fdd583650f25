"""Every config field, its default and what it means, declared together.

The config is flat on purpose: every field is one command-line flag of
``experiments/run.py`` (``--top_p 0.5``, ``--trans_dim 64``, ...).  ``FIELDS``
holds one record per field: its default (the authors' hyperparameters), its
help text (what it does and in which unit: the flag's ``--help`` and the
reference for the fields) and, for the fields that take one of a few names,
the names.  Dataset configs (``mosei.py``, ``iemocap.py``, ``synthetic.py``)
start from ``get_config`` and override what differs; ``smoke.py`` shrinks
every width for tests and demos.  The names of the models and of every
other choice are defined here once: the model code, the flags and the
checks (``checks.py``) import them.

The batch size depends on the model: the paper trains MESM with batches of 2
and FE2E with batches of 8 (``PAPER_BATCH_SIZE``), so ``get_config(model)``
sets both ``model`` and ``batch_size``.  The config is only ever written
while it is built (here, by the dataset configs, by the command line or by a
caller before training); the training loop freezes it and keeps every value
it derives (such as the evaluation batch rounded to the devices) in its own
state.
"""

import dataclasses
from typing import Any, Dict, Tuple

import ml_collections

# The paper's models on faces, spectrograms and tokens, and its baselines
# (Tables 3 and 4), trained on feature sequences (mesm_jax.models.baselines).
END_TO_END = ('mesm', 'fe2e')
BASELINES = ('lf_lstm', 'lf_trans', 'mult', 'emoembs')
MODELS = END_TO_END + BASELINES

# Each baseline's training recipe: the values its authors published, laid
# over FIELDS' defaults by ``get_config(model)`` (so a flag given on the
# command line still wins).  The paper (MESM) re-ran the baselines and gives
# none of their settings; sources, in the originals (docs/training.md):
#   MESM = declare-lab/Multimodal-End2end-Sparse (README, src/cli.py)
#   MTER = wenliangdai/Modality-Transferable-MER (README, main.py,
#          src/config.py, src/models/mult.py)
#   MulT = yaohungt/Multimodal-Transformer (main.py, src/train.py)
_LF_RECIPE = {
    # MESM README, the lf_rnn / lf_transformer commands: -lr=5e-4 -ep=60
    # -bs=32 --early-stop=8 --clip=2 (Adam, main.py; no -sc: no scheduler)
    'lr': 5e-4, 'epochs': 60, 'batch_size': 32, 'early_stop': 8,
    'clip_grad': 2.0,
}
RECIPES = {
    'lf_lstm': dict(_LF_RECIPE),
    # --trans-nlayers: MESM src/cli.py's default 2 (the README command does
    # not set it).
    'lf_trans': {**_LF_RECIPE, 'trans_nlayers': 2},
    'emoembs': {
        # MTER README, the eea commands: -bs=64 -lr=1e-3 -ep=100 --clip=1.0
        # --early-stop=8 --patience=5; main.py: ReduceLROnPlateau(mode='min',
        # factor=0.1, patience=--patience) stepped on the validation loss
        # (src/trainers/emotion.py).
        'batch_size': 64, 'lr': 1e-3, 'epochs': 100, 'clip_grad': 1.0,
        'early_stop': 8, 'plateau_factor': 0.1, 'plateau_patience': 5,
    },
    'mult': {
        # MulT main.py defaults: --batch_size 24, --lr 1e-3, --num_epochs 40,
        # --clip 0.8, --when 20 (the scheduler's patience); src/train.py:
        # ReduceLROnPlateau(mode='min', patience=when, factor=0.1) on the
        # validation loss; no early stopping (every epoch runs, the best
        # validation loss is kept).
        'batch_size': 24, 'lr': 1e-3, 'epochs': 40, 'clip_grad': 0.8,
        'early_stop': 0, 'plateau_factor': 0.1, 'plateau_patience': 20,
    },
}
# The MulT architecture of MTER (the EmoEmbs authors' MulT, src/models/
# mult.py): width 40 (d_l = d_a = d_v = 40), temporal convolutions of
# kernel 3 (text), 5 (audio), 3 (visual).
_MTER_MULT = {'mult_d_model': 40, 'mult_conv_kernels': (3, 5, 3)}
# Per dataset (``recipe(model, dataset)``, applied by mosei.py / iemocap.py).
DATASET_RECIPES = {
    # MTER README: --data-seq-len=20 (MOSEI) / 50 (IEMOCAP): every
    # modality's sequence at that length.
    ('emoembs', 'mosei'): {'max_text_feats': 20, 'max_audio_feats': 20,
                           'max_vision_feats': 20},
    ('emoembs', 'iemocap'): {'max_text_feats': 50, 'max_audio_feats': 50,
                             'max_vision_feats': 50},
    # MTER src/config.py MULT_PARAMS['iemocap'] (its 4-class IEMOCAP; the
    # nearest published setting for the paper's six classes).
    ('mult', 'iemocap'): {
        **_MTER_MULT, 'mult_heads': 10, 'baseline_layers': 4,
        'mult_attn_dropout': 0.25, 'mult_res_dropout': 0.1,
        'mult_relu_dropout': 0.1, 'mult_out_dropout': 0.1,
        'mult_embed_dropout': 0.3, 'mult_attn_mask': False},
    # MTER src/config.py MULT_PARAMS['mosei_senti'] (MOSEI sentiment: MTER
    # has no MulT entry for MOSEI emotions; the nearest published setting).
    ('mult', 'mosei'): {
        **_MTER_MULT, 'mult_heads': 8, 'baseline_layers': 4,
        'mult_attn_dropout': 0.2, 'mult_res_dropout': 0.1,
        'mult_relu_dropout': 0.1, 'mult_out_dropout': 0.1,
        'mult_embed_dropout': 0.2, 'mult_attn_mask': True},
}
# The paper's batch: MESM 2, FE2E 8; the baselines' from their recipes.
PAPER_BATCH_SIZE = {'mesm': 2, 'fe2e': 8,
                    **{b: RECIPES[b]['batch_size'] for b in BASELINES}}
DATASETS = ('mosei', 'iemocap', 'synthetic', 'manifest')
MODALITIES = ('tav', 'ta', 'tv', 'va', 't', 'a', 'v')
SPARSE_IMPLS = ('gathered', 'masked')
ATTENTION_GRADS = ('none', 'scaled')
DTYPES = ('float32', 'bfloat16')
RUNNERS = ('pmap', 'shard_map')
FACE_DETECTORS = ('mtcnn', 'center')
TEXT_RULES = ('last_colon', 'full')
INITS = ('pytorch', 'flax')


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field: its default, its help text, its allowed names."""
  default: Any
  help: str
  choices: Tuple[str, ...] = ()


FIELDS: Dict[str, Field] = {
    # --- data --------------------------------------------------------------
    'dataset': Field(
        'synthetic',
        'mosei | iemocap | synthetic (generated clips in the MOSEI layout, '
        'no download) | manifest (your own clips, --manifest); picks the '
        'TFDS data and the emotions',
        choices=DATASETS),
    'data_dir': Field(
        '',
        "TFDS data directory, a folder or gs://bucket/path; '' = "
        '~/tensorflow_datasets. The prepared data is built there once and '
        'read by every run'),
    'raw_dir': Field(
        '',
        "directory of the raw release (or the authors' processed folders, "
        'docs/data.md) to build the TFDS data from; only read while '
        "building; '' for synthetic: <data_dir>/synthetic_raw (for a gs:// "
        'data_dir a local folder, docs/training.md)'),
    'manifest': Field(
        '',
        "dataset 'manifest' only: CSV or JSONL file, one row per clip "
        '(clip_id, video, audio, start, end, text, split, labels; '
        'docs/data.md); its label set sets num_emotions'),
    'splits_dir': Field(
        '',
        'directory with train.txt, valid.txt, test.txt (clip ids, one a '
        "line) to build the TFDS data from; '' = the authors' split files "
        "(synthetic: the raw dir's splits/). Data built from other split "
        'files is not reused'),
    'num_emotions': Field(
        6,
        'number of emotion classes E, the width of the logits (MOSEI and '
        'IEMOCAP: 6)'),
    'img_interval': Field(
        500,
        'milliseconds between two sampled video frames (paper: 500 ms; 7500 '
        "ms is the original loader's MOSEI rate). Changing it builds other "
        'TFDS data'),
    'log_mel': Field(
        False,
        'false (faithful, quirk 5): power mel spectrogram; true: log(mel + '
        '1e-6). Changing it builds other TFDS data'),
    'face_detector': Field(
        'mtcnn',
        "mtcnn (the paper's MTCNN face crops) | center (the centre crop of "
        'every frame, no detector: fast, for tests). Changing it builds '
        'other TFDS data',
        choices=FACE_DETECTORS),
    'text_max_len': Field(
        100,
        'tokens per utterance, special tokens included; longer transcripts '
        'are cut, shorter ones padded (paper: 100). Changing it builds '
        'other TFDS data'),
    'max_frames': Field(
        64,
        'at most this many face frames per clip (frames), kept evenly '
        'spaced over the clip; batches use 3 length buckets up to it'),
    'max_chunks': Field(
        64,
        'at most this many spectrogram chunks per clip (a chunk: 32 '
        'spectrogram frames, 0.4 s at 16 kHz), kept evenly spaced over the '
        'clip'),
    'deterministic_input': Field(
        True,
        'true: tf.data keeps a fixed order, so a resumed run sees the same '
        'batches as an uninterrupted one; false: possibly faster, order may '
        'vary'),
    'shuffle_buffer': Field(
        256,
        'tf.data shuffle buffer of the training split (clips)'),
    'text_rule': Field(
        'last_colon',
        'IEMOCAP transcripts: last_colon (faithful, quirk 6: the words '
        'after the last colon of the line) | full (everything after the '
        '[start-end]: prefix). Changing it builds other TFDS data',
        choices=TEXT_RULES),
    'synthetic_clips': Field(
        240,
        'synthetic dataset only: number of generated clips (70/15/15 % '
        'train/valid/test)'),
    'max_text_feats': Field(
        50,
        'baselines only: at most this many word vectors per clip (the first '
        "ones); shorter texts are padded and masked (MulT's MOSEI text "
        'length: 50)'),
    'max_audio_feats': Field(
        100,
        'baselines only: at most this many acoustic frames (400 ms each) '
        'per clip, kept evenly spaced over the clip; padded and masked up '
        'to it'),
    'max_vision_feats': Field(
        100,
        'baselines only: at most this many facial action unit frames per '
        'clip, kept evenly spaced over the clip; padded and masked up to it'),
    'features_pickle': Field(
        '',
        'baselines only: a MulT / MMSA feature pickle (any widths), a '
        "folder of the MESM authors' MOSEI features "
        '(mosei_senti_hcf_{train,valid,test}.pkl; or those files '
        "comma-separated) or IEMOCAP features "
        '({train,valid,test}_{text,audio,video}_features.pt), joined by '
        "clip id with the labels and splits of --raw_dir; the baselines "
        "are built at the files' widths ('' = the "
        'synthetic features of --dataset synthetic)'),
    'openface_dir': Field(
        '',
        'baselines only: folder of OpenFace 2.0 CSVs, one <video id>.csv '
        'per video (or below it): with it (and no --features_pickle) the '
        'features are computed from the raw clips of --raw_dir (the 35 '
        "action units in each clip's time span, acoustic features of its "
        "wav, word vectors); clips that fail are skipped and reported; '' = "
        'not this source'),
    'glove_path': Field(
        '',
        'baselines: GloVe text file (.txt, .gz or .zip, 300-d). With '
        '--openface_dir the word vectors of the text features; with any '
        "source EmoEmbs' emotion-word vectors (a --features_pickle or "
        "synthetic source keeps its own text features). '' = the bundled "
        'MiniLM input embeddings (384-d): the raw text features, and '
        "EmoEmbs' emotion vectors and text LSTM width"),
    'beam_options': Field(
        '',
        "'' = build locally with worker processes; else Apache Beam "
        'pipeline options, e.g. runner=DirectRunner,direct_num_workers=4 or '
        'runner=DataflowRunner,project=...,region=...,'
        "temp_location=gs://...; needs pip install -e '.[beam]'"),
    # --- model -------------------------------------------------------------
    'model': Field(
        'mesm',
        'mesm (sparse CNN stages 3-5 after cross-modal attention; needs the '
        'text modality) | fe2e (dense CNNs) | the baselines on feature '
        'sequences: lf_lstm | lf_trans | mult | emoembs. Sets the batch '
        "size (MESM 2, FE2E 8: the paper's) and, for a baseline, its "
        "authors' recipe (configs.RECIPES: lr, epochs, batch, clipping, "
        'early stop, LR schedule; docs/training.md)',
        choices=MODELS),
    'modalities': Field(
        'tav',
        'modalities used: any non-empty subset of t (text), a (audio), v '
        '(visual faces)',
        choices=MODALITIES),
    'top_p': Field(
        0.5,
        "MESM's nucleus threshold p: each frame of a sparse stage keeps its "
        'most attended positions until their attention sums to p (paper: '
        'MOSEI 0.5, IEMOCAP 0.7); >= 1 keeps every one'),
    'sparse_impl': Field(
        'gathered',
        'gathered (work follows the nucleus capacity) | masked (dense '
        'reference); the same numbers',
        choices=SPARSE_IMPLS),
    'attention_grad': Field(
        'none',
        'none (faithful, quirk 1: the cross-modal attention gets no '
        'gradient and never learns) | scaled (kept features are scaled by '
        'their attention: it learns)',
        choices=ATTENTION_GRADS),
    'baseline_layers': Field(
        0,
        "baselines only: layers of MulT's crossmodal Transformers (its "
        'memory Transformers get max(layers, 3), as in MulT) and of '
        "EmoEmbs' LSTMs; 0 = each baseline's published depth (MulT 5, "
        'memory 5; EmoEmbs 2; --dataset mosei / iemocap: MulT 4). LF-TRANS '
        'reads trans_nlayers'),
    'mult_d_model': Field(
        30,
        "MulT only: width of its Transformers (MulT's 30; --dataset mosei "
        "/ iemocap: 40, MTER's MulT); a multiple of mult_heads"),
    'mult_heads': Field(
        5,
        "MulT only: attention heads (MulT's 5; IEMOCAP 10, MOSEI 8: "
        "MTER's MULT_PARAMS)"),
    'mult_conv_kernels': Field(
        (1, 1, 1),
        "MulT only: kernel of the temporal convolution projecting text, "
        "audio, visual to mult_d_model (odd; 'same' padding); MulT's 1, 1, "
        "1; --dataset mosei / iemocap: 3, 5, 3 (MTER's MulT)"),
    'mult_attn_dropout': Field(
        0.1,
        'MulT only: attention-weight dropout (crossmodal attention with an '
        'audio or visual source: none, as in MulT)'),
    'mult_relu_dropout': Field(
        0.1, 'MulT only: dropout after the feed-forward ReLU'),
    'mult_res_dropout': Field(
        0.1, 'MulT only: dropout on the residual branches'),
    'mult_embed_dropout': Field(
        0.25,
        'MulT only: dropout of the scaled inputs plus positions (and of '
        'the text input)'),
    'mult_out_dropout': Field(
        0.0, 'MulT only: dropout in the output residual block'),
    'mult_attn_mask': Field(
        True,
        "MulT only: the original's future mask (query i sees keys j <= i + "
        '|S - L|); false: every real key'),
    'cnn_features': Field(
        (64, 128, 256, 512),
        'channels of the visual and audio CNNs: stem/VGG blocks 1-2, stage '
        '3, stage 4, stage 5 (4 widths)'),
    'cnn_fc_dim': Field(
        1024,
        'width of the fully connected layer after each CNN'),
    'trans_dim': Field(
        64,
        'model width of the per-modality Transformers'),
    'trans_nlayers': Field(
        4,
        'layers of each per-modality Transformer'),
    'trans_nheads': Field(
        4,
        'attention heads of each Transformer layer'),
    'trans_ff_dim': Field(
        2048,
        "hidden width of the Transformers' feed-forward blocks"),
    'dropout': Field(
        0.1,
        'dropout rate of the Transformers and of the scratch text encoder '
        '(0..1)'),
    'text_model': Field(
        'albert-base-v2',
        'text encoder: albert-base-v2 (paper) | minilm (bundled, offline) | '
        'scratch (randomly initialised, scratch_* shape) | a checkpoint '
        'directory | a Hugging Face name in the local cache '
        '(docs/text_encoders.md). Its token ids are part of the TFDS data'),
    'text_checkpoint': Field(
        '',
        'Hugging Face checkpoint directory of the text encoder; overrides '
        "text_model's lookup ('' = none)"),
    'scratch_vocab_size': Field(
        30522,
        'text_model=scratch: vocabulary size of the random text encoder '
        '(token ids below it)'),
    'scratch_text_dim': Field(
        768,
        'text_model=scratch: model width of the random text encoder (the '
        'width of its CLS feature)'),
    'scratch_text_layers': Field(
        2,
        'text_model=scratch: Transformer layers of the random text encoder'),
    'scratch_text_heads': Field(
        12,
        'text_model=scratch: attention heads of each of its layers'),
    'scratch_text_ff_dim': Field(
        3072,
        'text_model=scratch: hidden width of its feed-forward blocks'),
    'dtype': Field(
        'float32',
        'compute dtype: float32 | bfloat16 (parameters stay float32, the '
        'loss is computed in float32)',
        choices=DTYPES),
    'remat': Field(
        False,
        'rematerialise the CNN stages in the backward pass: less memory, '
        'more compute'),
    'init': Field(
        'pytorch',
        "initial parameters: pytorch (faithful: the original's PyTorch "
        'defaults, e.g. Linear and conv weights and biases uniform in '
        '+-1/sqrt(fan_in), self-attention in-projection xavier uniform, CLS '
        "N(0, 1); docs/training.md) | flax (Flax's defaults: LeCun normal "
        'kernels, zero biases, CLS N(0, 0.02)). The text encoder and the '
        'checkpoint layout are the same either way',
        choices=INITS),
    'conv_chunk': Field(
        -1,
        'dense convolutions compute their kernel gradient in chunks of at '
        'most this many frames; -1: 16 on CPU, one piece on GPU/TPU; 0: one '
        'piece. The same numbers either way'),
    # --- training ----------------------------------------------------------
    'epochs': Field(
        40,
        'most training epochs (passes over the training split)'),
    'batch_size': Field(
        PAPER_BATCH_SIZE['mesm'],
        'global training batch, clips over every device and host (paper: '
        'MESM 2, FE2E 8; set with --model unless given)'),
    'eval_batch_size': Field(
        8,
        'global evaluation batch (clips); rounded up to a multiple of the '
        'devices used'),
    'lr': Field(
        5e-05,
        "Adam learning rate of every parameter except the text model's"),
    'text_lr_factor': Field(
        10.0,
        'the text encoder and the text head train at lr / text_lr_factor '
        '(paper: 10)'),
    'weight_decay': Field(
        0.0,
        'L2 term weight_decay * param added to the gradient before Adam '
        "(torch.optim.Adam's, not AdamW); 0 = off"),
    'clip_grad': Field(
        0.0,
        'clip the whole gradient to this global L2 norm before Adam '
        "(torch's clip_grad_norm_); 0 = off (FE2E / MESM, as the "
        "original's README commands; the baselines' recipes clip)"),
    'plateau_patience': Field(
        0,
        "ReduceLROnPlateau on the validation loss, as torch's (mode min, "
        'relative threshold 1e-4, checked once per epoch): after more than '
        'this many epochs without a lower validation loss the learning '
        'rate is multiplied by plateau_factor; 0 = off (FE2E / MESM, LF-*; '
        'EmoEmbs 5, MulT 20)'),
    'plateau_factor': Field(
        0.1,
        'the factor of plateau_patience (0 < factor < 1)'),
    'early_stop': Field(
        6,
        'stop after this many epochs without a better validation average '
        'F1; 0 = never'),
    'seed': Field(
        0,
        'random seed of the initial parameters, dropout and the training '
        'order (epoch e is shuffled with seed + e)'),
    'parallel': Field(
        'pmap',
        'how the step is mapped over devices: pmap | shard_map (the same '
        'numbers)',
        choices=RUNNERS),
    'checkpoint_every_steps': Field(
        200,
        'save the latest state every this many training steps inside an '
        'epoch (and at each epoch end)'),
    'log_every_steps': Field(
        50,
        'log the mean training metrics (and check the loss for NaN) every '
        'this many steps'),
    'keep_checkpoints': Field(
        2,
        'latest-state checkpoints kept (newest first); a resume falls back '
        'to an older one if the newest cannot be restored. The best '
        'checkpoint is kept besides'),
}

HELP = {name: field.help for name, field in FIELDS.items()}
CHOICES = {name: field.choices for name, field in FIELDS.items()
           if field.choices}


def get_config(model: str = 'mesm') -> ml_collections.ConfigDict:
  """The authors' settings for ``model`` ('mesm', 'fe2e' or a baseline)."""
  c = ml_collections.ConfigDict(
      {name: field.default for name, field in FIELDS.items()})
  c.model = model
  c.batch_size = PAPER_BATCH_SIZE[model]
  c.update(recipe(model))
  return c


def recipe(model: str, dataset: str = '') -> Dict[str, Any]:
  """The fields ``model``'s authors set (``RECIPES``), with those for
  ``dataset`` (``DATASET_RECIPES``) when given; ``{}`` for FE2E / MESM."""
  return {**RECIPES.get(model, {}),
          **(DATASET_RECIPES.get((model, dataset), {}) if dataset else {})}
