"""TFDS builders mosei_e2e / iemocap_e2e on tiny generated raw data.

The whole path runs here: synthetic raw files (MOSEI / IEMOCAP layouts) ->
preprocess.iter_examples ('center' face detector) -> TFDS records, read back
and checked against the split files, the skip log and the tokenizer.
"""

import json
import subprocess
import sys
from pathlib import Path

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import readers
from data_pipelines import synthetic
from data_pipelines.tfds import IemocapE2e, MoseiE2e
from data_pipelines.tfds import base
from data_pipelines.tfds import prepare
import mesm_jax
from mesm_jax import input_pipeline
import test_readers

NUM_CLIPS = 16      # MOSEI synthetic clips (all splits together)
NUM_DIALOGS = 2     # IEMOCAP synthetic dialogs


def _split_ids(raw_dir: Path, split: str) -> list[str]:
  return (raw_dir / 'splits' / f'{split}.txt').read_text().split()


def _skipped_ids(data_dir: Path) -> set[str]:
  """Clip ids that the preprocessing logged as skipped (any split)."""
  ids = set()
  for log in Path(data_dir).glob('downloads/preprocess_cache/*/skipped.jsonl'):
    for line in log.read_text().splitlines():
      if line.strip():
        ids.add(json.loads(line)['clip_id'])
  return ids


def _smoke_config():
  c = mesm_jax.get_config('smoke')
  c.dataset = 'synthetic'
  return c


@pytest.fixture(scope='module')
def mosei(tmp_path_factory):
  root = tmp_path_factory.mktemp('mosei')
  raw = root / 'raw'
  synthetic.write_mosei_raw(raw, num_clips=NUM_CLIPS, seed=1)
  builder = input_pipeline.build_tfds(
      _smoke_config(), raw_dir=raw, data_dir=root / 'tfds', num_workers=1,
      progress=False)
  return builder, raw, root / 'tfds'


def _read_split(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split)))


def _check_split_against_raw(builder, raw, data_dir):
  skipped = _skipped_ids(data_dir)
  config = builder.builder_config
  tok = config.tokenizer()
  for split in base.SPLITS:
    expected = [i for i in _split_ids(raw, split) if i not in skipped]
    examples = _read_split(builder, split)
    # Example counts per split: every listed clip except the skipped ones.
    assert builder.info.splits[split].num_examples == len(expected)
    assert sorted(e['clip_id'].decode() for e in examples) == sorted(expected)
    for ex in examples:
      f, c = int(ex['n_frames']), int(ex['n_chunks'])
      assert f >= 1 and c >= 1
      chex.assert_shape(ex['faces'], (f, 48, 48, 3))
      chex.assert_shape(ex['spec'], (c, 128, 32))
      assert ex['faces'].dtype == np.uint8 and ex['spec'].dtype == np.float16
      chex.assert_shape(ex['labels'], (6,))
      assert ex['labels'].dtype == np.float32
      assert set(np.unique(ex['labels'])) <= {0.0, 1.0}
      assert 0 <= ex['face_fallbacks'] <= f
      ids, mask = tok.encode([ex['text'].decode()], config.text_max_len)
      np.testing.assert_array_equal(ex['text_ids'], ids[0])
      np.testing.assert_array_equal(ex['text_mask'], mask[0])
      assert ex['text_ids'].dtype == np.int32


def test_mosei_synthetic_build(mosei):
  builder, raw, data_dir = mosei
  assert builder.name == 'mosei_e2e'
  assert builder.builder_config.face_detector == 'center'
  _check_split_against_raw(builder, raw, data_dir)
  assert builder.info.metadata['emotions'] == list(synthetic.EMOTIONS_MOSEI)


def test_features_spec(mosei):
  builder, _, _ = mosei
  features = builder.info.features
  L = _smoke_config().text_max_len
  assert features['faces'].shape == (None, 48, 48, 3)
  assert features['faces'].np_dtype == np.uint8
  assert features['spec'].shape == (None, 128, 32)
  assert features['spec'].np_dtype == np.float16
  assert features['text_ids'].shape == (L,)
  assert features['text_mask'].shape == (L,)
  assert features['labels'].shape == (6,)
  assert features['labels'].np_dtype == np.float32
  for key in ('n_frames', 'n_chunks', 'face_fallbacks'):
    assert features[key].np_dtype == np.int32


def test_rebuild_reuses_prepared_data(mosei):
  builder, raw, data_dir = mosei
  for raw_dir in (raw, None):   # the same raw dir, or none given
    again = input_pipeline.build_tfds(_smoke_config(), raw_dir=raw_dir,
                                      data_dir=data_dir, progress=False)
    assert again.data_path == builder.data_path
    assert again.info.splits['train'].num_examples == (
        builder.info.splits['train'].num_examples)
  assert again.info.metadata['source']['raw_dir'] == str(raw.resolve())


def test_other_source_is_not_reused(mosei, tmp_path):
  """Data built from raw dir A is never read for a run that asks for B."""
  _, raw, data_dir = mosei
  other = tmp_path / 'other_raw'
  synthetic.write_mosei_raw(other, num_clips=5, seed=9)
  with pytest.raises(prepare.SourceMismatchError) as err:
    input_pipeline.build_tfds(_smoke_config(), raw_dir=other,
                              data_dir=data_dir, progress=False)
  assert str(raw.resolve()) in str(err.value)
  assert str(other.resolve()) in str(err.value)
  # Other split files (other ids) are refused as well.
  splits = tmp_path / 'splits'
  splits.mkdir()
  for split in base.SPLITS:
    ids = _split_ids(raw, split)
    (splits / f'{split}.txt').write_text('\n'.join(ids[:-1] or ids) + '\n')
  config = _smoke_config()
  config.splits_dir = str(splits)
  with pytest.raises(prepare.SourceMismatchError, match='split files'):
    input_pipeline.build_tfds(config, data_dir=data_dir, progress=False)


def test_splits_dir_for_mosei_layout(tmp_path, caplog):
  """The real label files, built with --splits_dir (ids not shipped).

  URL-form Input.VIDEO_ID, each clip's annotators split over two CSVs, one
  of which lacks Answer.fear: the built labels follow the sum-of-scores rule
  over both files, and the missing column is reported by name.
  """
  raw = tmp_path / 'raw'
  synthetic.write_mosei_raw(raw, num_clips=8, seed=5, clip_seconds=(0.5, 0.8),
                            video_id_form='url', split_annotators=True)
  batch_2 = raw / 'Labels' / 'batch_2.csv'
  rows = test_readers._csv_rows(batch_2)  # pylint: disable=protected-access
  test_readers._write_csv(batch_2, rows, [  # pylint: disable=protected-access
      c for c in rows[0] if c != 'Answer.fear'])
  config = _smoke_config()
  config.dataset = 'mosei'    # a MOSEI-layout raw dir, not generated data
  with pytest.raises(ValueError, match='None of the split ids') as err:
    input_pipeline.build_tfds(config, raw_dir=raw, data_dir=tmp_path / 'a',
                              num_workers=1, progress=False)
  first_id = readers.read_split_ids('mosei', 'train')[0]
  assert repr(first_id) in str(err.value)   # ids of the split file ...
  videos = sorted(p.stem for p in raw.rglob('*.mp4'))
  assert repr(videos[0]) in str(err.value)   # ... and of the raw dir
  assert '--splits_dir' in str(err.value)
  config.splits_dir = str(raw / 'splits')
  with caplog.at_level('WARNING'):
    builder = input_pipeline.build_tfds(config, raw_dir=raw,
                                        data_dir=tmp_path / 'b', num_workers=1,
                                        progress=False)
  assert any('batch_2.csv' in r.getMessage() and 'Answer.fear' in
             r.getMessage() for r in caplog.records)
  sums = test_readers._reference_sums(raw / 'Labels')  # pylint: disable=protected-access
  for split in base.SPLITS:
    built = {ex['clip_id'].decode(): ex['labels'] for ex in tfds.as_numpy(
        builder.as_dataset(split=split))}
    assert built and set(built) <= set(_split_ids(raw, split))
    for clip_id, labels in built.items():
      np.testing.assert_array_equal(labels, sums[clip_id] > 0)


def test_iemocap_synthetic_build(tmp_path):
  raw = tmp_path / 'raw'
  synthetic.write_iemocap_raw(raw, num_dialogs=NUM_DIALOGS, seed=2)  # has an 'xxx' one
  builder = IemocapE2e(config='synthetic', data_dir=str(tmp_path / 'tfds'),
                       num_workers=1, progress=False)
  # The Python equivalent of
  #   tfds build data_pipelines/tfds/iemocap_e2e.py --config synthetic
  #       --manual_dir RAW --data_dir DATA
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(raw), try_download_gcs=False))
  _check_split_against_raw(builder, raw, tmp_path / 'tfds')
  for split in base.SPLITS:       # IEMOCAP: exactly one class per clip.
    for ex in _read_split(builder, split):
      assert ex['labels'].sum() == 1
  assert builder.info.metadata['emotions'] == list(synthetic.EMOTIONS_IEMOCAP)


@pytest.mark.slow
def test_tfds_build_command(tmp_path):
  """The documented command builds what build_tfds then reads."""
  raw = tmp_path / 'raw'
  synthetic.write_mosei_raw(raw, num_clips=6, seed=4)   # 4/1/1 clips
  root = Path(__file__).resolve().parents[1]
  cmd = [sys.executable, '-m', 'data_pipelines.tfds', 'build',
         str(root / 'data_pipelines/tfds/mosei_e2e.py'), '--config',
         'synthetic', '--manual_dir', str(raw), '--data_dir',
         str(tmp_path / 'tfds'),
         # Never reach the network (TFDS would look for a prepared copy of
         # the dataset on its public GCS bucket first).
         '--download_config', '{"try_download_gcs": false}']
  done = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                        timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  builder = input_pipeline.build_tfds(
      mesm_jax.get_config('synthetic'), raw_dir=raw,
      data_dir=tmp_path / 'tfds')
  assert builder.builder_config.name == 'synthetic'
  total = sum(builder.info.splits[s].num_examples for s in base.SPLITS)
  assert total == 6 - len(_skipped_ids(tmp_path / 'tfds'))
  assert total > 0


@pytest.mark.parametrize('dataset,where', [('mosei', 'MultiComp'),
                                           ('iemocap', 'USC SAIL')])
def test_missing_data_error(tmp_path, dataset, where):
  config = mesm_jax.get_config(dataset)
  missing = tmp_path / 'no_such_raw_dir'
  with pytest.raises(FileNotFoundError) as err:
    input_pipeline.build_tfds(config, raw_dir=missing,
                              data_dir=tmp_path / 'tfds')
  msg = str(err.value)
  assert str(missing) in msg                     # where it looked (raw) ...
  assert str(tmp_path / 'tfds') in msg            # ... and (prepared TFDS)
  assert where in msg                             # how to obtain it
  # How to build it: the TFDS command for the named config, or --raw_dir.
  assert (f'python -m data_pipelines.tfds build data_pipelines/tfds/'
          f'{dataset}_e2e.py --config albert' in msg)
  assert '--raw_dir /path/to/raw to experiments/run.py' in msg
  config.raw_dir = ''                             # nothing given at all
  with pytest.raises(FileNotFoundError, match='none given: --raw_dir'):
    input_pipeline.build_tfds(config, data_dir=tmp_path / 'tfds')


def test_data_pipelines_do_not_import_mesm_jax():
  """Dependencies run one way: data_pipelines builds data without mesm_jax."""
  root = Path(__file__).resolve().parents[1]
  code = ('import sys, data_pipelines.tfds, data_pipelines.tfds.prepare, '
          'data_pipelines.text; '
          "print(sorted(m for m in sys.modules if m.startswith('mesm_jax')))")
  done = subprocess.run([sys.executable, '-c', code], cwd=root,
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip() == '[]'
  named = [str(p.relative_to(root)) for p in (root / 'data_pipelines').rglob(
      '*') if p.is_file() and p.suffix in ('.py', '.md', '.txt') and
           'mesm_jax' in p.read_text(errors='replace')]
  assert not named, f'data_pipelines files naming mesm_jax: {named}'


def test_builder_configs():
  # The paper's settings map to the named config that `tfds build` makes.
  assert input_pipeline.builder_config(
      mesm_jax.get_config('mosei')).name == 'albert'
  synth = input_pipeline.builder_config(mesm_jax.get_config('synthetic'))
  assert synth.name == 'synthetic' and synth.synthetic
  c = mesm_jax.get_config('mosei')
  c.log_mel, c.text_max_len = True, 50
  custom = input_pipeline.builder_config(c, face_detector='center')
  assert custom.name == 'albert_base_v2-L50-i500-logmel-center'
  for cls in (MoseiE2e, IemocapE2e):
    names = [b.name for b in cls.BUILDER_CONFIGS]
    assert len(set(names)) == len(names) and 'synthetic' in names
    assert cls.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_bad_example_names_the_clip():
  good = dict(text='hi', labels=np.zeros(6, np.float32),
              faces=np.zeros((2, 48, 48, 3), np.uint8),
              spec=np.zeros((3, 128, 32), np.float16),
              n_frames=2, n_chunks=3, face_fallbacks=0)
  base.check_example('ok_1', good)
  bad_cases = [dict(faces=np.zeros((2, 48, 48, 3), np.float32)),
               dict(spec=np.zeros((3, 128, 31), np.float16)),
               dict(faces=np.zeros((0, 48, 48, 3), np.uint8), n_frames=0),
               dict(n_chunks=4), dict(labels=np.zeros(7, np.float32))]
  for change in bad_cases:
    with pytest.raises(ValueError, match='clip vid_7'):
      base.check_example('vid_7', {**good, **change})


def test_expected_tfds_warnings_are_dropped_the_others_kept():
  import logging  # pylint: disable=g-import-not-at-top
  from data_pipelines.tfds import base  # pylint: disable=g-import-not-at-top
  keep = base.ExpectedTfdsWarnings().filter
  record = lambda msg: logging.LogRecord('absl', logging.WARNING, '', 0, msg,
                                         (), None)
  assert not keep(record('Using custom data configuration: E2EConfig(...)'))
  assert not keep(record('Variant folder /d/mosei_e2e/x/1.0.0 has no '
                         'dataset_info.json'))
  assert keep(record('Dataset mosei_e2e is corrupted'))
  assert any(isinstance(f, base.ExpectedTfdsWarnings)
             for f in logging.getLogger('absl').filters)
