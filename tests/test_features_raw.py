"""Source 'raw' of ``features_e2e``: baseline features from the raw clips.

Synthetic MOSEI-layout raw data (real wavs, videos, transcripts), OpenFace
2.0 CSVs written for its videos and a tiny GloVe file covering its words but
one -> ``prepare.prepare_features(..., openface_dir=, glove_path=)``: every
stored modality is what the feature functions give for the clip, and the
clips of a video without a CSV are skipped and reported.
"""

import json

import jax
import numpy as np
import pytest

import mesm_jax
from data_pipelines import features
from data_pipelines import synthetic
from data_pipelines.readers import openface
from data_pipelines.tfds import base
from data_pipelines.tfds import features as features_tfds
from data_pipelines.tfds import prepare
from mesm_jax import feature_pipeline
from mesm_jax import models

CLIPS = 12
FPS = 10.0            # rows per second of the OpenFace CSVs


def _video_clips(truth: dict) -> dict[str, list[str]]:
  out = {}
  for clip_id, t in truth.items():
    out.setdefault(t['video'], []).append(clip_id)
  return out


def _video_to_drop(truth: dict) -> str:
  """A video whose clips can go while every split keeps one."""
  videos = _video_clips(truth)
  for video in sorted(videos, key=lambda v: len(videos[v])):
    left = {truth[c]['split'] for c in truth if truth[c]['video'] != video}
    if left == set(base.SPLITS):
      return video
  raise AssertionError('no video can be dropped')


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  """Raw data, OpenFace CSVs (one video's missing), a GloVe file."""
  root = tmp_path_factory.mktemp('raw_features')
  raw_dir = root / 'raw'
  synthetic.write_mosei_raw(raw_dir, num_clips=CLIPS, seed=3,
                            frame_size=(96, 72))
  truth = json.loads((raw_dir / 'ground_truth.json').read_text())
  rng = np.random.default_rng(0)
  openface_dir = root / 'openface'
  aus = {}
  dropped = _video_to_drop(truth)
  for video, ids in _video_clips(truth).items():
    end = max(truth[c]['end'] for c in ids) + 0.3
    times = np.round(np.arange(int(end * FPS)) / FPS, 3)
    values = np.concatenate([
        np.round(rng.uniform(0, 5, (times.size, len(openface.AU_R))), 2),
        rng.integers(0, 2, (times.size, len(openface.AU_C)))], axis=1)
    aus[video] = (times, values)
    if video != dropped:
      openface.write_openface_csv(openface_dir / f'{video}.csv', values,
                                  timestamps=times)
  vocab = sorted({w for t in truth.values()
                  for w in features.words_of(t['text'])})
  first = sorted(c for c in truth if truth[c]['video'] != dropped)[0]
  unknown = features.words_of(truth[first]['text'])[0]
  glove = root / 'glove.txt'
  vectors = {w: np.round(rng.standard_normal(300), 4) for w in vocab
             if w != unknown}
  glove.write_text(''.join(
      w + ' ' + ' '.join(f'{x:.4f}' for x in v) + '\n'
      for w, v in vectors.items()))
  return {'raw_dir': raw_dir, 'truth': truth, 'openface_dir': openface_dir,
          'aus': aus, 'dropped': dropped, 'glove': glove,
          'first': first, 'unknown': unknown, 'vectors': vectors,
          'root': root}


@pytest.fixture(scope='module')
def built(raw):
  return prepare.prepare_features(
      prepare.FeatureRequest('mosei', openface_dir=str(raw['openface_dir']),
                             glove_path=str(raw['glove'])),
      raw_dir=raw['raw_dir'], data_dir=raw['root'] / 'tfds',
      splits_dir=raw['raw_dir'] / 'splits', progress=False)


def test_raw_features_are_those_of_the_clips(raw, built):
  truth = raw['truth']
  c = built.builder_config
  assert c.source == 'raw' and c.text_dim == 300
  assert c.name.startswith('raw-mosei-glove_glove_') and '-t300-' in c.name
  assert built.info.features['text_feats'].shape == (None, 300)
  skipped = set(_video_clips(truth)[raw['dropped']])
  seen = {}
  for split in base.SPLITS:
    for ex in built.as_dataset(split=split).as_numpy_iterator():
      clip_id = ex['clip_id'].decode()
      assert truth[clip_id]['split'] == split
      seen[clip_id] = ex
  assert set(seen) == set(truth) - skipped
  first = raw['first']        # its text holds the word the GloVe file lacks
  for clip_id in (first, sorted(seen)[-1]):
    ex, t = seen[clip_id], truth[clip_id]
    words = features.words_of(t['text'])
    start, end = t['start'], t['end']
    assert ex['text_feats'].shape == (len(words), 300)
    wav = raw['raw_dir'] / 'Audio' / 'WAV_16000' / f'{t["video"]}.wav'
    acoustic = features.clip_acoustic_features(wav, start=start, end=end)
    assert ex['audio_feats'].shape == acoustic.shape
    assert acoustic.shape[1] == 144 and acoustic.shape[0] >= 5  # 2-4 s
    np.testing.assert_allclose(ex['audio_feats'], acoustic, rtol=1e-6)
    times, values = raw['aus'][t['video']]
    window = (times >= start) & (times <= end)
    assert ex['vision_feats'].shape == (window.sum(), 35)
    np.testing.assert_allclose(ex['vision_feats'], values[window], rtol=1e-6)
    np.testing.assert_array_equal(
        ex['text_feats'], features.glove_vectors(t['text'], raw['glove']))
    for i, w in enumerate(words):
      want = raw['vectors'].get(w, np.zeros(300))   # unknown word: zeros
      np.testing.assert_allclose(ex['text_feats'][i], want, rtol=1e-6)
    np.testing.assert_array_equal(ex['labels'], t['labels'])
  assert not seen[first]['text_feats'][
      features.words_of(truth[first]['text']).index(raw['unknown'])].any()


def test_clips_without_a_csv_are_skipped_and_reported(raw, built):
  skipped = set(_video_clips(raw['truth'])[raw['dropped']])
  report = built.info.metadata['skip_report']
  ids = {i for s in base.SPLITS for i in report[s]['skipped_ids']}
  assert ids == skipped
  assert sum(report[s]['examples'] for s in base.SPLITS) == CLIPS - len(ids)
  assert {k for s in base.SPLITS for k in report[s]['skipped']} == {
      'missing_openface'}
  log = built.info.metadata['source']['skip_log']
  records = [json.loads(l) for l in open(log).read().splitlines()]
  assert {r['clip_id'] for r in records} == skipped
  assert all(r['reason'] == 'missing_openface' and
             r['file'].endswith(f'{raw["dropped"]}.csv') for r in records)
  summary = prepare.skip_summary(built)
  assert 'missing_openface' in summary and log in summary


def test_no_clip_left_in_a_split_is_an_error(raw):
  empty = raw['root'] / 'no_openface'
  empty.mkdir()
  with pytest.raises(ValueError, match="no usable clip in split 'train'"):
    prepare.prepare_features(
        prepare.FeatureRequest('mosei', openface_dir=str(empty)),
        raw_dir=raw['raw_dir'], data_dir=raw['root'] / 'tfds2',
        splits_dir=raw['raw_dir'] / 'splits', progress=False)


def test_config_name_follows_the_stored_features(raw, tmp_path):
  kw = dict(dataset='mosei', openface_dir=str(raw['openface_dir']))
  glove = features_tfds.features_config('raw', glove_path=str(raw['glove']),
                                        **kw)
  minilm = features_tfds.features_config('raw', **kw)
  assert minilm.text_dim == 384 and '-minilm2-t384-' in minilm.name
  assert glove.name != minilm.name
  other = tmp_path / 'glove.txt'       # another GloVe file: another name
  other.write_text(raw['glove'].read_text())
  assert features_tfds.features_config(
      'raw', glove_path=str(other), **kw).name != glove.name
  csv = tmp_path / 'of' / 'v.csv'      # OpenFace CSVs of other sizes
  openface.write_openface_csv(csv, np.zeros((3, 35)))
  name = features_tfds.features_config('raw', dataset='mosei',
                                       openface_dir=str(csv.parent)).name
  openface.write_openface_csv(csv, np.zeros((4, 35)))
  assert features_tfds.features_config(
      'raw', dataset='mosei', openface_dir=str(csv.parent)).name != name


def test_the_model_is_built_at_the_widths_of_its_data(built):
  # GloVe: 300-d words, the raw source's 144 acoustic values, 35 AUs; the
  # model's text head takes what the data stores.
  dims = feature_pipeline.feature_dims(built)
  assert dims == (300, 144, 35)
  config = mesm_jax.get_config('smoke', 'lf_trans')
  model = models.build_model(config, feature_dims=dims)
  batch = {}
  for key, d in zip(feature_pipeline.KEYS, dims):
    batch[key] = np.zeros((2, 5, d), np.float32)
    batch[f'{key}_mask'] = np.ones((2, 5), bool)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), batch))
  assert shapes['params']['text_head_fc1']['kernel'].shape == (300, 150)
  with pytest.raises(ValueError, match='pass feature_dims'):
    models.build_model(config)
