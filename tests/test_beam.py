"""The TFDS builders on Apache Beam (DirectRunner) = the local build.

Tiny synthetic MOSEI raw data with a corrupt video, a clip with an unknown
label and an id missing from the data is built three times: locally, with
Beam into a fresh data dir (fresh per-clip cache: Beam computes every clip),
and with Beam on a cache that already holds half of the clips (an
interrupted build): same examples, same skip report, and the cached clips
are not recomputed.
"""

import json
import os
from pathlib import Path
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

pytest.importorskip('apache_beam')

from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
from data_pipelines.tfds import base  # pylint: disable=g-import-not-at-top
from data_pipelines.tfds import prepare  # pylint: disable=g-import-not-at-top

pytestmark = pytest.mark.slow  # a Beam build

BEAM = 'runner=DirectRunner,direct_num_workers=2'
OLD = 1_000_000_000  # mtime (s) given to the clips put into the cache


def _config():
  return prepare.builder_config(
      'synthetic', text_model='scratch', scratch_vocab_size=1000,
      text_max_len=12, face_detector='center')


def _corrupt(raw: Path, truth: dict) -> tuple[list[str], str]:
  """Own split files; one bad video, one unknown label, one missing id.

  Returns the clip ids of the bad video and the one of the unknown label.
  """
  by_video = {}
  for clip_id, gt in sorted(truth.items()):
    by_video.setdefault(gt['video'], []).append(clip_id)
  videos = sorted(by_video)
  bad_video, labelled = videos[0], videos[1]
  (raw / 'Videos' / 'Full' / 'Combined' / f'{bad_video}.mp4').write_bytes(
      b'\x00garbage' * 500)
  unknown = by_video[labelled][0]
  video_id, clip = unknown.rsplit('_', 1)
  for csv_path in (raw / 'Labels').glob('*.csv'):
    lines = csv_path.read_text().splitlines(keepends=True)
    lines = [l.replace(',0,', ',abc,', 1)
             if f',{video_id},{clip},' in l else l for l in lines]
    csv_path.write_text(''.join(lines))
  good = [c for v in videos[1:] for c in by_video[v] if c != unknown]
  splits = {'valid': good[:1], 'test': good[1:2],
            'train': by_video[bad_video] + [unknown] + good[2:] +
                     ['not_in_data_7']}
  for split, ids in splits.items():
    (raw / 'splits' / f'{split}.txt').write_text('\n'.join(ids) + '\n')
  return by_video[bad_video], unknown


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  root = tmp_path_factory.mktemp('beam_raw') / 'raw'
  truth = synthetic.write_mosei_raw(root, num_clips=10, seed=3,
                                    frame_size=(96, 72),
                                    clip_seconds=(1.0, 1.5))
  return root, _corrupt(root, truth)


def _build(raw_dir, data_dir, beam_options=None):
  return prepare.prepare('synthetic', _config(), raw_dir=raw_dir,
                         data_dir=data_dir, num_workers=1, progress=False,
                         beam_options=beam_options)


def _examples(builder) -> dict[str, dict[str, dict]]:
  return {split: {ex['clip_id'].decode(): ex for ex in tfds.as_numpy(
      builder.as_dataset(split=split))} for split in base.SPLITS}


def _cache_dir(data_dir: Path) -> Path:
  (key,) = (Path(data_dir) / 'downloads' / 'preprocess_cache').iterdir()
  return key


def _skip_log(data_dir: Path) -> list[dict]:
  lines = (_cache_dir(data_dir) / 'skipped.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(l).items() if k != 'time'}
          for l in lines]


def _summaries(data_dir: Path) -> dict[str, dict]:
  vary = ('seconds', 'from_cache', 'computed', 'mtcnn_per_process')
  out = {}
  for path in sorted(_cache_dir(data_dir).glob('summary_*.json')):
    out[path.name] = {k: v for k, v in json.loads(path.read_text()).items()
                      if k not in vary}
  return out


def _assert_same(local, other, local_dir, other_dir):
  a, b = _examples(local), _examples(other)
  for split in base.SPLITS:
    assert sorted(a[split]) == sorted(b[split]), split
    assert a[split], split
    for clip_id, ex in a[split].items():
      assert sorted(ex) == sorted(b[split][clip_id])
      for key, value in ex.items():
        np.testing.assert_array_equal(value, b[split][clip_id][key],
                                      err_msg=f'{split} {clip_id} {key}')
  assert other.info.metadata['skip_report'] == (
      local.info.metadata['skip_report'])
  assert _skip_log(other_dir) == _skip_log(local_dir)
  assert _summaries(other_dir) == _summaries(local_dir)


def test_beam_build_equals_local_and_resumes_from_cache(raw, tmp_path):
  raw_dir, (bad, unknown) = raw
  local = _build(raw_dir, tmp_path / 'local')
  report = local.info.metadata['skip_report']
  skipped = dict(report['train']['skipped'])
  assert skipped.pop('bad_video') == len(bad)
  assert list(skipped.values()) == [1]      # the label (reader: no_label)
  assert report['train']['skipped_ids'] == [unknown] + bad
  assert report['train']['missing'] == 1
  assert report['valid'] == {'in_split_file': 1, 'examples': 1, 'missing': 0,
                             'skipped': {}, 'skipped_ids': []}

  # 1. Beam on a fresh cache: computes every clip, builds the same data.
  beam = _build(raw_dir, tmp_path / 'beam', BEAM)
  assert beam.data_path.name == local.data_path.name
  assert beam.builder_config.name == local.builder_config.name
  _assert_same(local, beam, tmp_path / 'local', tmp_path / 'beam')
  summary = json.loads((_cache_dir(tmp_path / 'beam') /
                        'summary_mosei_train.json').read_text())
  assert summary['from_cache'] == 0 and summary['computed'] >= 2

  # 2. An interrupted build: half of the clips are in the cache.
  local_cache = _cache_dir(tmp_path / 'local')
  resumed_cache = (tmp_path / 'resumed' / 'downloads' / 'preprocess_cache' /
                   local_cache.name)
  (sub,) = [d for d in local_cache.iterdir() if d.is_dir()]
  clips = sorted(sub.glob('*.npz'))
  kept = clips[::2]
  (resumed_cache / sub.name).mkdir(parents=True)
  for path in kept:
    shutil.copyfile(path, resumed_cache / sub.name / path.name)
    os.utime(resumed_cache / sub.name / path.name, (OLD, OLD))
  resumed = _build(raw_dir, tmp_path / 'resumed', BEAM)
  _assert_same(local, resumed, tmp_path / 'local', tmp_path / 'resumed')
  after = {p.name: p.stat().st_mtime for p in
           (resumed_cache / sub.name).glob('*.npz')}
  assert sorted(after) == [p.name for p in clips]
  assert sorted(n for n, t in after.items() if t == OLD) == [
      p.name for p in kept]
  counts = [json.loads((resumed_cache / f'summary_mosei_{s}.json')
                       .read_text()) for s in base.SPLITS]
  assert sum(c['from_cache'] for c in counts) == len(kept)
  assert sum(c['computed'] for c in counts) == len(clips) - len(kept)

  # 3. Built data is reused whatever the runner: no rebuild with Beam.
  again = _build(raw_dir, tmp_path / 'local', BEAM)
  assert again.data_path == local.data_path
