"""tf.data pipeline: static shapes, masks, caps, buckets, order, sharding.

Runs on a tiny synthetic dataset built once per module (raw files ->
preprocess -> TFDS); every expectation is recomputed here in plain numpy from
the stored TFDS examples.
"""

import math

import chex
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import mesm_jax
from experiments.perf import pipeline as perf_pipeline
from mesm_jax import input_pipeline as ip
from data_pipelines import synthetic

NUM_CLIPS = 40
MAX_FRAMES, MAX_CHUNKS = 8, 8
CLIP_SECONDS = (0.5, 5.0)   # ~1-10 frames, ~2-13 chunks: 3 buckets + caps
KEYS = {'text_ids': np.int32, 'text_mask': np.int32, 'faces': np.float32,
        'face_mask': np.bool_, 'spec': np.float32, 'spec_mask': np.bool_,
        'labels': np.float32, 'clip_mask': np.bool_, 'clip_id': np.object_}


def _config(**overrides):
  c = mesm_jax.get_config('smoke')
  c.dataset = 'synthetic'
  c.max_frames, c.max_chunks = MAX_FRAMES, MAX_CHUNKS
  c.batch_size, c.eval_batch_size = 4, 4
  c.deterministic_input = True
  c.update(overrides)
  return c


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('pipeline')
  synthetic.write_mosei_raw(root / 'raw', num_clips=NUM_CLIPS, seed=3,
                            clip_seconds=CLIP_SECONDS)
  builder = ip.build_tfds(_config(), raw_dir=root / 'raw',
                          data_dir=root / 'tfds', num_workers=1,
                          progress=False)
  stored = {split: {ex['clip_id'].decode(): ex for ex in tfds.as_numpy(
      builder.as_dataset(split=split))} for split in ('train', 'test')}
  lengths = [(len(e['faces']), len(e['spec'])) for e in stored['test'].values()]
  buckets = {_np_bucket(min(f, MAX_FRAMES), min(c, MAX_CHUNKS))
             for f, c in lengths}
  # The data exercises what is tested: several buckets, capped clips.
  assert len(buckets) >= 2, lengths
  assert max(f for f, _ in lengths) > MAX_FRAMES, lengths
  assert max(c for _, c in lengths) > MAX_CHUNKS, lengths
  return builder, stored


def _batches(builder, split, train, **kwargs):
  config = kwargs.pop('config', _config())
  ds = ip.make_dataset(config, split, train=train, builder=builder, **kwargs)
  return list(ds.as_numpy_iterator())


def _real_ids(batches):
  return [cid.decode() for b in batches
          for cid, on in zip(b['clip_id'], b['clip_mask']) if on]


# --- numpy reference of the documented rules ------------------------------


def _np_keep(n, cap):
  """Indices kept of n rows: centres of cap equal segments when n > cap."""
  if n <= cap:
    return np.arange(n)
  return np.floor((np.arange(cap) + 0.5) * n / cap).astype(int)


def _np_bucket(f, c):
  """(F, C) of the smallest of the 3 buckets (1/4, 1/2, 1 of the caps)."""
  for r in (0.25, 0.5, 1.0):
    size = (math.ceil(MAX_FRAMES * r), math.ceil(MAX_CHUNKS * r))
    if f <= size[0] and c <= size[1]:
      return size
  raise AssertionError('a capped clip always fits the last bucket')


# --- tests -----------------------------------------------------------------


def test_cap_uniform_matches_numpy():
  for n in range(1, 20):
    for cap in (1, 3, 4, 8):
      x = tf.range(n)
      got = ip.cap_uniform(x, cap).numpy()
      np.testing.assert_array_equal(got, _np_keep(n, cap))
      assert len(np.unique(got)) == len(got)  # no frame taken twice


def test_eval_batches_shapes_masks_and_values(data):
  builder, stored = data
  L = _config().text_max_len
  batches = _batches(builder, 'test', train=False)
  shapes = set()
  for b in batches:
    assert set(b) == set(KEYS)
    for key, dtype in KEYS.items():
      assert b[key].dtype == dtype, key
    F, C = b['faces'].shape[1], b['spec'].shape[1]
    shapes.add((F, C))
    chex.assert_shape(b['faces'], (4, F, 48, 48, 3))
    chex.assert_shape(b['spec'], (4, C, 128, 32))
    chex.assert_shape([b['face_mask']], (4, F))
    chex.assert_shape([b['spec_mask']], (4, C))
    chex.assert_shape([b['text_ids'], b['text_mask']], (4, L))
    chex.assert_shape(b['labels'], (4, 6))
    for i, cid in enumerate(b['clip_id']):
      if not b['clip_mask'][i]:       # padded clip: empty everywhere
        assert cid == b'' and not b['face_mask'][i].any()
        assert not b['spec_mask'][i].any() and not b['text_mask'][i].any()
        continue
      ex = stored['test'][cid.decode()]
      _check_clip(b, i, ex, F, C)
  assert shapes <= set(ip.bucket_shapes(MAX_FRAMES, MAX_CHUNKS))


def _check_clip(b, i, ex, F, C):
  """One real clip of a batch against its stored example (numpy rules)."""
  keep_f = _np_keep(len(ex['faces']), MAX_FRAMES)
  keep_c = _np_keep(len(ex['spec']), MAX_CHUNKS)
  assert (F, C) == _np_bucket(len(keep_f), len(keep_c))
  np.testing.assert_array_equal(b['face_mask'][i],
                                np.arange(F) < len(keep_f))
  np.testing.assert_array_equal(b['spec_mask'][i], np.arange(C) < len(keep_c))
  mean, std = np.array([159., 111., 102.]), np.array([37., 33., 32.])
  faces = (ex['faces'][keep_f].astype(np.float32) - mean) / std
  np.testing.assert_allclose(b['faces'][i, :len(keep_f)], faces, rtol=1e-6)
  assert not b['faces'][i, len(keep_f):].any()      # padded frames are 0
  np.testing.assert_array_equal(b['spec'][i, :len(keep_c)],
                                ex['spec'][keep_c].astype(np.float32))
  assert not b['spec'][i, len(keep_c):].any()
  np.testing.assert_array_equal(b['text_ids'][i], ex['text_ids'])
  np.testing.assert_array_equal(b['text_mask'][i], ex['text_mask'])
  np.testing.assert_array_equal(b['labels'][i], ex['labels'])


def test_eval_counts_every_clip_once(data):
  builder, stored = data
  ids = _real_ids(_batches(builder, 'test', train=False))
  assert sorted(ids) == sorted(stored['test'])


def test_padding_efficiency_against_numpy(data):
  builder, stored = data
  got = perf_pipeline.measure(_config(), 'test', builder=builder)
  # Reference: each clip -> its bucket; a bucket of n clips makes ceil(n / B)
  # batches of B slots; real frames are the capped counts.
  per_bucket, frames, chunks = {}, 0, 0
  for ex in stored['test'].values():
    f = min(len(ex['faces']), MAX_FRAMES)
    c = min(len(ex['spec']), MAX_CHUNKS)
    frames, chunks = frames + f, chunks + c
    size = _np_bucket(f, c)
    per_bucket[size] = per_bucket.get(size, 0) + 1
  batches = {s: -(-n // 4) for s, n in per_bucket.items()}
  frame_slots = sum(4 * s[0] * k for s, k in batches.items())
  chunk_slots = sum(4 * s[1] * k for s, k in batches.items())
  assert got['batches'] == sum(batches.values())
  assert got['clips'] == len(stored['test'])
  assert (got['frames'], got['frame_slots']) == (frames, frame_slots)
  assert (got['chunks'], got['chunk_slots']) == (chunks, chunk_slots)
  assert got['frame_efficiency'] == pytest.approx(frames / frame_slots)
  assert got['chunk_efficiency'] == pytest.approx(chunks / chunk_slots)
  assert got['batches_per_s'] > 0 and got['clips_per_s'] > 0


def test_train_full_batches_and_seeded_order(data):
  builder, stored = data
  run = lambda **kw: _real_ids(_batches(builder, 'train', train=True, **kw))
  first = _batches(builder, 'train', train=True, seed=5)
  for b in first:                         # drop_remainder: all clips real
    assert b['clip_mask'].all() and b['labels'].shape[0] == 4
  ids = _real_ids(first)
  assert len(set(ids)) == len(ids) and set(ids) <= set(stored['train'])
  assert len(ids) >= len(stored['train']) - 3 * 3   # <= B-1 left per bucket
  assert run(seed=5) == ids                     # same seed, same order
  assert run(seed=6) != ids                     # another seed, another order
  assert run(seed=5, epoch=1) != ids            # reshuffled per epoch


def test_skip_batches_resumes_mid_epoch(data):
  builder, _ = data
  full = _batches(builder, 'train', train=True, seed=9)
  rest = _batches(builder, 'train', train=True, seed=9, skip_batches=2)
  assert len(rest) == len(full) - 2
  for a, b in zip(full[2:], rest):
    chex.assert_trees_all_equal(a, b)


@pytest.mark.parametrize('process_count', [2, 3])
def test_host_shards_disjoint_and_covering(data, process_count):
  builder, stored = data
  gbs = 4 * process_count
  shards = [_batches(builder, 'test', train=False, global_batch_size=gbs,
                     process_index=i, process_count=process_count)
            for i in range(process_count)]
  ids = [_real_ids(s) for s in shards]
  flat = [i for host in ids for i in host]
  assert len(flat) == len(set(flat))                 # disjoint
  assert sorted(flat) == sorted(stored['test'])      # covering
  assert len({len(s) for s in shards}) == 1          # hosts in lockstep
  shapes = set(ip.bucket_shapes(MAX_FRAMES, MAX_CHUNKS))
  for s in shards:
    for b in s:
      assert b['labels'].shape[0] == 4               # per-host batch
      assert (b['faces'].shape[1], b['spec'].shape[1]) in shapes
      assert set(b) == set(KEYS)
  train = [_batches(builder, 'train', train=True, global_batch_size=gbs,
                    process_index=i, process_count=process_count)
           for i in range(process_count)]
  assert len({len(t) for t in train}) == 1
  train_ids = [set(_real_ids(t)) for t in train]
  assert not set.intersection(*train_ids)


def test_global_batch_must_divide():
  with pytest.raises(ValueError, match='not divisible'):
    ip.make_dataset(_config(), 'test', train=False, global_batch_size=5,
                    process_index=0, process_count=2, builder=object())


def test_element_spec_is_static_but_frames(data):
  builder, _ = data
  L = _config().text_max_len
  spec = ip.make_dataset(_config(), 'test', train=False,
                         builder=builder).element_spec
  expected = {'text_ids': [4, L], 'text_mask': [4, L],
              'faces': [4, None, 48, 48, 3], 'face_mask': [4, None],
              'spec': [4, None, 128, 32], 'spec_mask': [4, None],
              'labels': [4, 6], 'clip_mask': [4], 'clip_id': [4]}
  assert {k: v.shape.as_list() for k, v in spec.items()} == expected
