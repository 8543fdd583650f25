"""Golden files: the authors' PyTorch models on tiny inputs (tests/test_goldens.py).

Run by hand, never by the tests.  It imports the ORIGINAL code from checkouts
given on the command line (``sys.path``; nothing of theirs is copied here),
builds each model at tiny widths with fixed seeds, runs it and writes one
``.npz`` per model into ``tests/goldens/``: the inputs, the original's weights
under their PyTorch names, its outputs and, for FE2E, the loss, the gradients
and the BatchNorm running statistics.  The tests map the weights into this
project's Flax modules and compare; they never import torch.

Repositories and the commits the committed files were made from:

  wenliangdai/Multimodal-End2end-Sparse  a1bb2e818db76cb887052d82916a6dcf012170ed
      FE2E (``src/models/e2e.py`` MME2E), LF-LSTM
      (``src/models/baselines/lf_rnn.py`` LF_RNN), LF-TRANS
      (``src/models/baselines/lf_transformer.py`` LF_Transformer), the
      evaluator (``src/evaluate.py``)
  yaohungt/Multimodal-Transformer        a670936824ee722c8494fd98d204977a1d663c7a
      MulT (``src/models.py`` MULTModel)
  wenliangdai/Modality-Transferable-MER  622f46cc4ca8b8b088afcb6633c9de9f758c6116
      EmoEmbs (``src/models/eea.py`` EmotionEmbAttnModel)

Each file's ``meta`` (a JSON string) repeats the commit of its repository, the
torch and transformers versions and the settings.  The command that made them
(checkouts in /tmp, e.g. ``git clone`` + ``git checkout <commit>``):

  python tests/goldens/make_goldens.py --mesm_dir /tmp/orig/mesm \
      --mult_dir /tmp/orig/mult --mter_dir /tmp/orig/mter

Packages: the dev extra (torch 2.13.0 CPU, transformers 5.x, scikit-learn);
made with torch 2.13.0+cpu and transformers 5.25.0.  Two imports of the
originals are not installed and are replaced by stubs in ``sys.modules``
before their modules are imported (no model code of theirs is changed):
  * ``facenet_pytorch.MTCNN``: face detection is data preparation, not the
    model; the stub returns each given 48x48 RGB crop (0..255) as the "face",
    as MTCNN(image_size=48, post_process=False) returns a detected one.
  * ``torchvision.transforms.Normalize``: ``(x - mean) / std`` per channel,
    what torchvision computes (torchvision's wheels here do not load with the
    CPU build of torch).

How the originals are made small (their forward code runs unchanged):
  * MME2E hard-codes the paper's widths.  While ``MME2E.__init__`` runs, the
    ``nn`` and ``VggBasicBlock`` names of ``src.models.e2e`` point at shims
    that map its widths to small ones: channels 64/128/256/512 -> 4/8/8/16
    (this project's smoke config), Linear widths 1024 -> 16, 512*3*3 ->
    16*3*3, 512*8*2 -> 16*8*2, and the text head's 768 -> the tiny ALBERT's
    hidden size.  ``AlbertModel.from_pretrained`` (a download) becomes a
    random tiny ``AlbertModel(AlbertConfig(...))`` (eager attention,
    ``return_dict=False``: the tuple that ``MME2E_T`` unpacks, as the
    transformers 3.x of the authors returned).
  * ``WrappedTransformerEncoder`` builds ``nn.TransformerEncoderLayer`` with
    PyTorch's defaults (feed-forward 2048, dropout 0.1); while it is built,
    its module's ``nn`` gives the layer a feed-forward width of 16 (FE2E and
    LF-TRANS) and, for FE2E, dropout 0, so that its training-mode step is
    deterministic (the baselines run in eval mode).
  * MulT's widths are its own (d = 30, memory 2d); only the inputs and the
    number of crossmodal layers (1; memory max(1, 3) = 3) are small.
  * LF_RNN and LF_Transformer keep their sizes in ``np.array``s; their
    module's ``np.array`` returns Python ints while they are built, because
    torch 2.13's LSTM refuses numpy integers (the torch they used took them).
  * Every parameter gets new random values on a coarse grid (``set_params``:
    no zero biases or unit scales that would hide a mapping error; MulT's
    fixed widths make 0.5 M parameters, which this grid keeps small) and is
    stored as float16, which holds them exactly; computations are float32.
What is captured:
  * fe2e.npz: MME2E in training mode (the trainer's ``model.train()``, BCE
    with ``pos_weight`` = negatives / positives of a training label set as
    ``main.py`` builds it): fused logits, the three heads' logits (forward
    hooks), the loss, every gradient and the BatchNorm running statistics
    after that forward and backward (no optimizer step); then eval mode with
    those statistics: the logits.
  * metrics.npz: ``eval_iemocap`` on valid (thresholds chosen there) and on
    test with those thresholds, ``eval_mosei_emo`` on test at 0.5.
  * lf_lstm, lf_trans, mult, emoembs.npz: eval-mode logits, and under
    ``published`` the names and shapes of the original's trainable
    parameters at its published settings (LF-TRANS: the README command,
    feed-forward 2048; MulT: 1 layer; EmoEmbs: the README's 300/200/100,
    2 layers) and this project's feature widths 300/144/35: no values.
  EmoEmbs' emotion vectors (GloVe in the original) are random here.
Rerunning the command rewrites identical arrays.
Known limits: MESM's sparse path (``src/models/sparse_e2e.py``) needs
SparseConvNet (CUDA) and has the multi-frame defect of MESM.md quirk 2; it is
not run here.

Padding: where the original reads variable lengths (FE2E's frame and chunk
counts, the text attention mask) a batch of clips of different lengths is run
as the original runs it.  The baselines' originals pad without masking (or do
not pad at all); their reference is the original run clip by clip at each
clip's own lengths (batch of one), stacked: what this project computes on a
padded batch, whose padding it masks (docs: "deliberate differences").
"""

import argparse
import contextlib
import functools
import json
import pathlib
import subprocess
import sys
import types

import numpy as np
import torch
import transformers

OUT = pathlib.Path(__file__).resolve().parent
SEED = 0
NUM_EMOTIONS = 6
# FE2E widths (the project's smoke config) and the maps onto them.
CHANNELS = {1: 1, 3: 3, 64: 4, 128: 8, 256: 8, 512: 16}
TINY_ALBERT = dict(vocab_size=40, embedding_size=8, hidden_size=16,
                   num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=32, hidden_act='gelu_new',
                   max_position_embeddings=16, type_vocab_size=2,
                   layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0, num_hidden_groups=1,
                   inner_group_num=1)
LINEARS = {1024: 16, 512 * 3 * 3: 16 * 3 * 3, 512 * 8 * 2: 16 * 8 * 2,
           768: TINY_ALBERT['hidden_size']}
TRANS_FF = 16
TEXT_LEN = 8


# ----------------------------------------------------------------- plumbing


def git(repo: pathlib.Path, *args: str) -> str:
  return subprocess.run(['git', '-C', str(repo), *args], check=True,
                        capture_output=True, text=True).stdout.strip()


def commit_of(repo: pathlib.Path) -> str:
  """HEAD of a checkout without local changes to its tracked files."""
  if git(repo, 'status', '--porcelain', '--untracked-files=no'):
    raise SystemExit(f'{repo}: local changes; use a clean checkout')
  return git(repo, 'rev-parse', 'HEAD')


def purge(*packages: str) -> None:
  """Forgets imported top-level packages (the repos all name theirs src)."""
  for name in list(sys.modules):
    if name.split('.')[0] in packages:
      del sys.modules[name]


@contextlib.contextmanager
def repo_on_path(repo: pathlib.Path):
  purge('src', 'modules')
  sys.path.insert(0, str(repo))
  try:
    yield
  finally:
    sys.path.remove(str(repo))


@contextlib.contextmanager
def patched(obj, **attrs):
  old = {k: getattr(obj, k) for k in attrs}
  for k, v in attrs.items():
    setattr(obj, k, v)
  try:
    yield
  finally:
    for k, v in old.items():
      setattr(obj, k, v)


class NNShim:
  """``torch.nn`` with a few constructors replaced."""

  def __init__(self, **overrides):
    self.__dict__.update(overrides)

  def __getattr__(self, name):
    return getattr(torch.nn, name)


class NumpyShim:
  """``numpy`` with a few functions replaced."""

  def __init__(self, **overrides):
    self.__dict__.update(overrides)

  def __getattr__(self, name):
    return getattr(np, name)


def python_ints(sizes):
  """``np.array(sizes)`` holding Python ints: torch 2.13's LSTM refuses
  numpy integers as sizes (the torch of the originals took them)."""
  return np.array([int(s) for s in sizes], dtype=object)


class _StubMTCNN:
  """The given crops are the faces (see the module doc)."""

  def __init__(self, *args, **kwargs):
    del args, kwargs

  def __call__(self, imgs):
    return [torch.tensor(np.asarray(img, np.float32)).permute(2, 0, 1)
            for img in imgs]

  def eval(self):
    return self


class _StubNormalize:
  """torchvision.transforms.Normalize: (x - mean) / std per channel."""

  def __init__(self, mean, std):
    self.mean, self.std = mean, std

  def __call__(self, x):
    mean = torch.as_tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
    std = torch.as_tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
    return (x - mean) / std


def install_stubs() -> None:
  sys.modules['facenet_pytorch'] = types.SimpleNamespace(MTCNN=_StubMTCNN)
  transforms = types.SimpleNamespace(Normalize=_StubNormalize)
  sys.modules['torchvision'] = types.SimpleNamespace(transforms=transforms)
  sys.modules['torchvision.transforms'] = transforms


def set_params(model: torch.nn.Module, rng: np.random.Generator) -> None:
  """New random values for every parameter, on a coarse grid.

  Initial values are too regular to test a mapping (zero biases, unit
  LayerNorm and BatchNorm scales hide a swapped or dropped tensor), and too
  many digits to store cheaply.  Each tensor gets ``c + k * s``: ``c`` its
  initial mean rounded (1 for unit scales, else 0), ``s`` a power of two near
  half its initial spread (1/16 for constant tensors), ``k`` a rounded
  N(0, 2) clipped to [-7, 7].  Float16 holds every value exactly.
  """
  with torch.no_grad():
    for p in model.parameters():
      init = p.detach().double().numpy()
      spread = float(init.std())
      step = 2.0 ** np.round(np.log2(spread / 2)) if spread > 0 else 1 / 16
      k = np.clip(np.round(rng.normal(0, 2, init.shape)), -7, 7)
      new = np.round(init.mean()) + k * step
      assert np.array_equal(new.astype(np.float16).astype(np.float64), new)
      p.copy_(torch.from_numpy(new.astype(np.float32)))


def params_of(model) -> dict:
  return {f'param/{k}': v.detach().numpy().astype(np.float16)
          for k, v in model.named_parameters()}


def f16(a) -> np.ndarray:
  """Float32 values that float16 holds exactly."""
  return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def write(name: str, meta: dict, arrays: dict) -> None:
  meta = dict(meta, torch=torch.__version__,
              transformers=transformers.__version__, seed=SEED)
  path = OUT / f'{name}.npz'
  np.savez_compressed(path, meta=np.array(json.dumps(meta, sort_keys=True)),
                      **arrays)
  print(f'{path.name}: {path.stat().st_size / 1024:.1f} KiB, '
        f'{len(arrays)} arrays')


# ----------------------------------------------------------------- FE2E


def fe2e_inputs(rng: np.random.Generator) -> dict:
  """Two clips: 3 and 2 face frames, 2 and 1 spectrogram chunks, 8 and 5
  tokens; one-hot labels (IEMOCAP style)."""
  face_lens, spec_lens, text_lens = [3, 2], [2, 1], [TEXT_LEN, 5]
  ids = rng.integers(4, TINY_ALBERT['vocab_size'], (2, TEXT_LEN))
  ids[:, 0] = 2                                           # [CLS]
  mask = (np.arange(TEXT_LEN)[None] < np.array(text_lens)[:, None])
  ids = np.where(mask, ids, 0)                            # <pad> = 0
  labels = np.zeros((2, NUM_EMOTIONS), np.float32)
  labels[0, 2] = labels[1, 4] = 1
  # The training split's labels give pos_weight (negatives / positives).
  train_labels = np.eye(NUM_EMOTIONS, dtype=np.float32)[
      rng.integers(0, NUM_EMOTIONS, 40)]
  train_labels[:NUM_EMOTIONS] = np.eye(NUM_EMOTIONS)      # every class seen
  return {
      'faces_raw': rng.integers(0, 256, (sum(face_lens), 48, 48, 3),
                                dtype=np.uint8),
      'face_lens': np.array(face_lens),
      # power mel spectrogram chunks (no log: MESM.md quirk 5)
      'spec': f16(rng.gamma(0.5, 20.0, (sum(spec_lens), 1, 128, 32))),
      'spec_lens': np.array(spec_lens),
      'text_ids': ids.astype(np.int64),
      'text_mask': mask.astype(np.int64),
      'labels': labels,
      'train_labels': train_labels,
  }


def build_fe2e(mesm_dir: pathlib.Path):
  """The authors' MME2E at the tiny widths (module doc)."""
  with repo_on_path(mesm_dir):
    from src.models import e2e, e2e_t, transformer_encoder  # pylint: disable=g-import-not-at-top
    width = lambda c: CHANNELS[c]
    linear = lambda n: LINEARS.get(n, n)
    shim = NNShim(
        Conv2d=lambda in_channels, out_channels, **kw: torch.nn.Conv2d(
            width(in_channels), width(out_channels), **kw),
        BatchNorm2d=lambda c: torch.nn.BatchNorm2d(width(c)),
        Linear=lambda i, o, bias=True: torch.nn.Linear(linear(i), linear(o),
                                                       bias=bias))
    albert = transformers.AlbertConfig(**TINY_ALBERT, return_dict=False,
                                       attn_implementation='eager')
    hub = types.SimpleNamespace(
        from_pretrained=lambda name: transformers.AlbertModel(albert))
    trans = NNShim(TransformerEncoderLayer=functools.partial(
        torch.nn.TransformerEncoderLayer, dim_feedforward=TRANS_FF,
        dropout=0.0))
    args = {'num_emotions': NUM_EMOTIONS, 'modalities': 'tav',
            'feature_dim': 8, 'trans_nlayers': 1, 'trans_nheads': 2,
            'trans_dim': 8, 'text_model_size': 'base'}
    torch.manual_seed(SEED)
    vgg = e2e.VggBasicBlock
    with patched(e2e, nn=shim,
                 VggBasicBlock=lambda in_planes, out_planes: vgg(
                     width(in_planes), width(out_planes))), \
         patched(e2e_t, AlbertModel=hub), \
         patched(transformer_encoder, nn=trans):
      model = e2e.MME2E(args, device=torch.device('cpu'))
  set_params(model, np.random.default_rng(SEED))
  return model, args


def run_fe2e(model, x: dict) -> dict:
  """One training-mode forward and backward as their trainer runs it, then
  eval mode with the updated running statistics."""
  heads = {'t': model.t_out, 'v': model.v_out, 'a': model.a_out}
  seen = {}
  hooks = [h.register_forward_hook(
      lambda mod, inp, out, m=m: seen.__setitem__(m, out.detach().numpy()))
           for m, h in heads.items()]
  text = {'input_ids': torch.tensor(x['text_ids']),
          'token_type_ids': torch.zeros_like(torch.tensor(x['text_ids'])),
          'attention_mask': torch.tensor(x['text_mask'])}
  args = (x['faces_raw'], x['face_lens'].tolist(), torch.tensor(x['spec']),
          x['spec_lens'].tolist(), text)
  # main.py: pos_weight = train_dataset.getPosWeight() (negatives /
  # positives over the training labels, numpy float64) -> torch.tensor.
  pos = x['train_labels'].sum(axis=0)
  pos_weight = (len(x['train_labels']) - pos) / pos
  criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
  out = {'output/pos_weight': pos_weight}

  model.train()
  model.zero_grad()
  logits = model(*args)
  loss = criterion(logits, torch.tensor(x['labels']))
  loss.backward()
  out['output/train_logits'] = logits.detach().numpy()
  out['output/train_loss'] = loss.detach().numpy()
  out.update({f'output/train_logits_{m}': v for m, v in seen.items()})
  out.update({f'grad/{k}': p.grad.numpy().copy()
              for k, p in model.named_parameters() if p.grad is not None})
  out.update({f'buffer_after/{k}': b.numpy().copy()
              for k, b in model.named_buffers() if 'running' in k})
  model.eval()
  seen.clear()
  with torch.no_grad():
    out['output/eval_logits'] = model(*args).numpy()
  out.update({f'output/eval_logits_{m}': v for m, v in seen.items()})
  for h in hooks:
    h.remove()
  return out


def make_fe2e(mesm_dir: pathlib.Path, commit: str) -> None:
  model, args = build_fe2e(mesm_dir)
  before = {f'buffer_before/{k}': b.numpy().copy()
            for k, b in model.named_buffers() if 'running' in k}
  params = params_of(model)
  x = fe2e_inputs(np.random.default_rng(SEED))
  out = run_fe2e(model, x)
  no_grad = sorted(k for k, _ in model.named_parameters()
                   if f'grad/{k}' not in out)
  meta = {'model': 'fe2e', 'repo': 'wenliangdai/Multimodal-End2end-Sparse',
          'commit': commit, 'class': 'src.models.e2e.MME2E', 'args': args,
          'cnn_features': [4, 8, 8, 16], 'cnn_fc_dim': 16,
          'trans_ff_dim': TRANS_FF, 'dropout': 0.0,
          'albert': dict(TINY_ALBERT, model_type='albert'),
          'face_mean': model.normalize.mean, 'face_std': model.normalize.std,
          'params_without_grad': no_grad}
  write('fe2e', meta, {**{f'input/{k}': v for k, v in x.items()}, **params,
                       **before, **out})


# ----------------------------------------------------------------- metrics


def make_metrics(mesm_dir: pathlib.Path, commit: str) -> None:
  """The evaluator: thresholds on valid, IEMOCAP metrics on valid and test
  (``eval_iemocap``, as the trainer calls it for both datasets) and the
  MOSEI evaluator's weighted accuracy, weighted F1 and AUC at 0.5."""
  with repo_on_path(mesm_dir):
    from src import evaluate  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(SEED + 1)
  arrays, meta = {}, {'model': 'metrics', 'commit': commit,
                      'repo': 'wenliangdai/Multimodal-End2end-Sparse',
                      'functions': ['src.evaluate.eval_iemocap',
                                    'src.evaluate.eval_mosei_emo']}
  for split, n in (('valid', 48), ('test', 40)):
    labels = (rng.random((n, NUM_EMOTIONS)) < 0.3).astype(np.float32)
    logits = rng.normal(0, 1.5, (n, NUM_EMOTIONS)) + 1.2 * labels - 0.5
    logits = logits.astype(np.float32)
    # no probability within 1e-5 of a threshold: a last-bit difference of
    # the two sigmoids cannot flip a prediction
    probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
    grid = np.arange(1, 20) * 0.05
    assert np.abs(probs[..., None] - grid).min() > 1e-5
    arrays[f'input/{split}_logits'] = logits
    arrays[f'input/{split}_labels'] = labels
  names = ('acc', 'recall', 'precision', 'f1', 'auc')
  valid_stats, thresholds = evaluate.eval_iemocap(
      torch.tensor(arrays['input/valid_logits']),
      torch.tensor(arrays['input/valid_labels']))
  test_stats, _ = evaluate.eval_iemocap(
      torch.tensor(arrays['input/test_logits']),
      torch.tensor(arrays['input/test_labels']), thresholds)
  arrays['output/thresholds'] = np.asarray(thresholds, np.float64)
  for split, stats in (('valid', valid_stats), ('test', test_stats)):
    for name, values in zip(names, stats):
      arrays[f'output/iemocap_{split}_{name}'] = np.asarray(values, np.float64)
  waccs, wf1s, aucs, _ = evaluate.eval_mosei_emo(
      torch.tensor(arrays['input/test_logits']),
      torch.tensor(arrays['input/test_labels']), 0.5)
  arrays['output/mosei_test_wacc'] = np.asarray(waccs, np.float64)
  arrays['output/mosei_test_f1_weighted'] = np.asarray(wf1s, np.float64)
  arrays['output/mosei_test_auc'] = np.asarray(aucs, np.float64)
  write('metrics', meta, arrays)


# ----------------------------------------------------------------- baselines


def feature_inputs(rng, dims, lens) -> dict:
  """Two clips of feature sequences, padded at the end; masks True = real."""
  out = {}
  for m, d, ls in zip('tav', dims, lens):
    x = f16(rng.normal(0, 1, (2, max(ls), d)))
    mask = np.arange(max(ls))[None] < np.array(ls)[:, None]
    out[f'input/{m}'] = np.where(mask[..., None], x, 0).astype(np.float32)
    out[f'input/{m}_mask'] = mask
  return out


def clip(x: dict, m: str, i: int) -> torch.Tensor:
  """Clip i of modality m at its own length: [1, L_i, D]."""
  n = int(x[f'input/{m}_mask'][i].sum())
  return torch.tensor(x[f'input/{m}'][i:i + 1, :n])


def per_clip(run, x: dict) -> np.ndarray:
  """The original on each clip alone (batch of one), stacked [B, E]."""
  with torch.no_grad():
    return np.concatenate([np.asarray(run(i)).reshape(1, -1)
                           for i in range(2)])


LENS = ((4, 3), (3, 2), (2, 3))
# The MESM README's LF-TRANS command (its depth is the parser's default).
README_LF_TRANS = ['main.py', '-lr=5e-4', '-ep=60', '-mod=tav', '-bs=32',
                   '--early-stop=8', '--loss=bce', '--cuda=0',
                   '--model=lf_transformer', '--num-emotions=6',
                   '--hand-crafted', '--clip=2']          # text, audio, visual lengths per clip


# This project's widths of the hand-crafted features (IEMOCAP: GloVe 300,
# DisVoice 144, action units 35) for the published architectures below.
PROJECT_DIMS = (300, 144, 35)


def published(model: torch.nn.Module, settings: dict) -> dict:
  """The trainable parameters' names and shapes of an original built with
  its published settings at this project's feature widths (no values)."""
  return {'feature_dims': PROJECT_DIMS, 'settings': settings,
          'params': {k: list(p.shape) for k, p in model.named_parameters()
                     if p.requires_grad}}


def build_lf(cls, dims, nlayers, ff):
  """LF_RNN / LF_Transformer at feature widths ``dims``; feed-forward ``ff``
  (None: PyTorch's default 2048)."""
  from src.models import transformer_encoder  # pylint: disable=g-import-not-at-top
  layer = torch.nn.TransformerEncoderLayer
  if ff:
    layer = functools.partial(layer, dim_feedforward=ff)
  args = {'hfc_sizes': list(dims), 'num_emotions': NUM_EMOTIONS,
          'modalities': 'tav', 'trans_nlayers': nlayers}
  torch.manual_seed(SEED)
  with patched(transformer_encoder, nn=NNShim(TransformerEncoderLayer=layer)), \
       patched(sys.modules[cls.__module__],
               np=NumpyShim(array=python_ints)):
    return cls(args), args


def make_lf(mesm_dir: pathlib.Path, commit: str) -> None:
  """LF-LSTM and LF-TRANS of the MESM authors (their LF_RNN defaults: one
  bidirectional layer; LF_Transformer: --trans-nlayers default 2)."""
  dims = (8, 6, 5)                     # heads of LF-TRANS: 4, 2, 5
  with repo_on_path(mesm_dir):
    from src.models.baselines import lf_rnn, lf_transformer  # pylint: disable=g-import-not-at-top
    from src import cli  # pylint: disable=g-import-not-at-top
    with patched(sys, argv=README_LF_TRANS):
      nlayers = cli.get_args()['trans_nlayers']
    for name, cls in (('lf_lstm', lf_rnn.LF_RNN),
                      ('lf_trans', lf_transformer.LF_Transformer)):
      full, _ = build_lf(cls, PROJECT_DIMS, nlayers, None)
      model, args = build_lf(cls, dims, nlayers, TRANS_FF)
      set_params(model, np.random.default_rng(SEED))
      model.eval()
      x = feature_inputs(np.random.default_rng(SEED + 2), dims, LENS)

      def run(i, model=model, x=x):
        v, a = clip(x, 'v', i)[0], clip(x, 'a', i)[0]
        return model(v, [len(v)], a, [len(a)], clip(x, 't', i))

      meta = {'model': name, 'commit': commit, 'args': args,
              'repo': 'wenliangdai/Multimodal-End2end-Sparse',
              'class': f'{cls.__module__}.{cls.__name__}',
              'trans_ff_dim': TRANS_FF, 'reference': 'per clip',
              'readme_command': README_LF_TRANS,
              'published': published(full, {'trans_nlayers': nlayers,
                                             'dim_feedforward': 2048})}
      write(name, meta, {**x, **params_of(model),
                         'output/logits': per_clip(run, x)})


def build_mult(dims, layers):
  """MULTModel with main.py's defaults except ``layers`` (memory: max(layers,
  3)) at feature widths ``dims``."""
  from src import models  # pylint: disable=g-import-not-at-top
  hyp = types.SimpleNamespace(
      orig_d_l=dims[0], orig_d_a=dims[1], orig_d_v=dims[2],
      lonly=True, aonly=True, vonly=True, num_heads=5, layers=layers,
      attn_dropout=0.1, attn_dropout_a=0.0, attn_dropout_v=0.0,
      relu_dropout=0.1, res_dropout=0.1, out_dropout=0.0,
      embed_dropout=0.25, attn_mask=True, output_dim=NUM_EMOTIONS)
  torch.manual_seed(SEED)
  return models.MULTModel(hyp), hyp


def make_mult(mult_dir: pathlib.Path, commit: str) -> None:
  """MULTModel with 1 crossmodal layer (memory max(1, 3) = 3)."""
  dims = (8, 6, 5)
  with repo_on_path(mult_dir):
    model, hyp = build_mult(dims, 1)
    full, _ = build_mult(PROJECT_DIMS, 1)
  set_params(model, np.random.default_rng(SEED))
  model.eval()
  x = feature_inputs(np.random.default_rng(SEED + 3), dims, LENS)
  run = lambda i: model(clip(x, 't', i), clip(x, 'a', i), clip(x, 'v', i))[0]
  meta = {'model': 'mult', 'commit': commit, 'hyp_params': vars(hyp),
          'repo': 'yaohungt/Multimodal-Transformer',
          'class': 'src.models.MULTModel', 'reference': 'per clip',
          'published': published(full, {'layers': 1})}
  write('mult', meta, {**x, **params_of(model),
                       'output/logits': per_clip(run, x)})


def build_emoembs(dims, hidden, emo):
  """EmotionEmbAttnModel as its README trains it: 2 bidirectional layers,
  dropout 0.15; ``emo`` the emotion words' vectors."""
  from src.models import eea  # pylint: disable=g-import-not-at-top
  torch.manual_seed(SEED)
  return eea.EmotionEmbAttnModel(
      num_classes=NUM_EMOTIONS, input_sizes=list(dims), hidden_size=0,
      hidden_sizes=list(hidden), num_layers=2, dropout=0.15, emo_weight=emo,
      device=torch.device('cpu'), bidirectional=True, modalities='tav')


def make_emoembs(mter_dir: pathlib.Path, commit: str) -> None:
  """EmoEmbs at tiny widths; random stand-ins for the GloVe vectors."""
  dims, hidden = (10, 7, 5), (8, 6, 4)
  rng = np.random.default_rng(SEED + 4)
  with repo_on_path(mter_dir):
    model = build_emoembs(dims, hidden,
                          f16(rng.normal(0, 0.5, (NUM_EMOTIONS, hidden[0]))))
    full = build_emoembs(PROJECT_DIMS, (300, 200, 100),
                         np.zeros((NUM_EMOTIONS, 300), np.float32))
  set_params(model, np.random.default_rng(SEED))
  model.eval()
  x = feature_inputs(rng, dims, LENS)
  run = lambda i: model(clip(x, 't', i), clip(x, 'a', i), clip(x, 'v', i))
  meta = {'model': 'emoembs', 'commit': commit,
          'repo': 'wenliangdai/Modality-Transferable-MER',
          'class': 'src.models.eea.EmotionEmbAttnModel',
          'feature_dims': dims, 'hidden_sizes': hidden, 'num_layers': 2,
          'bidirectional': True, 'reference': 'per clip',
          'frozen': [k for k, p in model.named_parameters()
                     if not p.requires_grad],
          'published': published(full, {'hidden_sizes': [300, 200, 100],
                                        'num_layers': 2})}
  write('emoembs', meta, {**x, **params_of(model),
                          'output/logits': per_clip(run, x)})


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mesm_dir', type=pathlib.Path, required=True,
                      help='checkout of wenliangdai/Multimodal-End2end-Sparse')
  parser.add_argument('--mult_dir', type=pathlib.Path, required=True,
                      help='checkout of yaohungt/Multimodal-Transformer')
  parser.add_argument('--mter_dir', type=pathlib.Path, required=True,
                      help='checkout of wenliangdai/Modality-Transferable-MER')
  args = parser.parse_args()
  torch.set_num_threads(1)
  sys.dont_write_bytecode = True          # leave the checkouts as they are
  install_stubs()
  mesm = commit_of(args.mesm_dir)
  make_fe2e(args.mesm_dir, mesm)
  make_metrics(args.mesm_dir, mesm)
  make_lf(args.mesm_dir, mesm)
  make_mult(args.mult_dir, commit_of(args.mult_dir))
  make_emoembs(args.mter_dir, commit_of(args.mter_dir))


if __name__ == '__main__':
  main()
