"""iter_examples: contract, frame sampling, sides, bad input, cache and resume."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import chex
import cv2
import librosa
import numpy as np
import pytest
from scipy.io import wavfile

from data_pipelines import faces
from data_pipelines import preprocess
from data_pipelines import readers
from data_pipelines import synthetic
from data_pipelines import video

FPS = synthetic.FPS


@pytest.fixture(scope='module')
def mosei_raw(tmp_path_factory):
  root = tmp_path_factory.mktemp('mosei_raw')
  truth = synthetic.write_mosei_raw(root, num_clips=16, seed=11,
                                    frame_size=(160, 120),
                                    clip_seconds=(1.0, 2.0))
  return root, truth


@pytest.fixture(scope='module')
def iemocap_raw(tmp_path_factory):
  root = tmp_path_factory.mktemp('iemocap_raw')
  truth = synthetic.write_iemocap_raw(root, num_dialogs=1, seed=2,
                                      utterances_per_dialog=6, half_size=96,
                                      clip_seconds=(1.0, 1.5))
  return root, truth


def examples(dataset, root, split='train', **kw):
  kw.setdefault('face_detector', 'center')
  kw.setdefault('num_workers', 0)
  kw.setdefault('progress', False)
  kw.setdefault('splits_dir', root / 'splits')
  return list(preprocess.iter_examples(dataset, root, split, **kw))


def all_frames(path):
  """Every frame of a video, decoded sequentially (no seeking), RGB."""
  cap = cv2.VideoCapture(str(path))
  out = []
  while True:
    ok, frame = cap.read()
    if not ok:
      return out
    out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def independent_spec(wav_path, start, end, channel=None):
  """librosa's mel spectrogram configured like the original's torchaudio
  MelSpectrogram (16 kHz: n_fft 400, hop 200, Hann, centred with reflect
  padding, power 2, 128 HTK mels, no norm), cut along time into chunks of
  32 frames, the last one zero-padded: [C, 128, 32] float64."""
  sr, data = wavfile.read(wav_path)
  assert sr == 16000                  # the synthetic releases' rate
  part = data[int(round(start * sr)):int(round(end * sr))]
  if part.ndim == 2:
    part = part[:, channel]
  mel = librosa.feature.melspectrogram(
      y=part / 32768.0, sr=sr, n_fft=400, hop_length=200, win_length=400,
      window='hann', center=True, pad_mode='reflect', power=2.0, n_mels=128,
      htk=True, norm=None, fmin=0.0, fmax=sr / 2, dtype=np.float64)
  chunks = -(-mel.shape[1] // 32)
  padded = np.zeros((128, 32 * chunks))
  padded[:, :mel.shape[1]] = mel
  return (np.stack([padded[:, 32 * i:32 * (i + 1)] for i in range(chunks)]),
          part.shape[0])


def assert_spec_close(stored, reference):
  """float16 storage keeps 11 bits (relative error <= 2^-11 = 4.9e-4) and
  our mel agrees with librosa's to 1e-4: 1e-3 relative, plus float16's
  subnormal step (6e-8) and librosa's tiny-value noise for the near-zeros."""
  assert stored.dtype == np.float16
  chex.assert_shape(stored, reference.shape)
  peak = np.abs(reference).max()
  np.testing.assert_allclose(stored.astype(np.float64), reference, rtol=1e-3,
                             atol=1e-7 + 1e-7 * peak)


def test_mosei_examples_follow_the_contract(mosei_raw, tmp_path):
  root, truth = mosei_raw
  out = examples('mosei', root, cache_dir=tmp_path)
  ids = (root / 'splits' / 'train.txt').read_text().split()
  assert [cid for cid, _ in out] == ids
  decoded = {}
  for clip_id, ex in out:
    gt = truth[clip_id]
    assert set(ex) == {'clip_id', 'text', 'labels', 'faces', 'spec',
                       'n_frames', 'n_chunks', 'face_fallbacks'}
    assert ex['clip_id'] == clip_id and ex['text'] == gt['text']
    np.testing.assert_array_equal(ex['labels'], gt['labels'])
    assert ex['labels'].dtype == np.float32
    n_frames = math.ceil((gt['end'] - gt['start']) / 0.5 - 1e-9)
    chex.assert_shape(ex['faces'], (n_frames, 48, 48, 3))
    assert ex['faces'].dtype == np.uint8 and ex['n_frames'] == n_frames
    assert ex['face_fallbacks'] == n_frames          # 'center' detector
    wav = root / 'Audio' / 'WAV_16000' / f"{gt['video']}.wav"
    spec, samples = independent_spec(wav, gt['start'], gt['end'])
    assert ex['n_chunks'] == math.ceil((1 + samples // 200) / 32)
    chex.assert_shape(ex['spec'], (ex['n_chunks'], 128, 32))
    assert_spec_close(ex['spec'], spec)
    mp4 = root / 'Videos' / 'Full' / 'Combined' / f"{gt['video']}.mp4"
    frames = decoded.setdefault(gt['video'], all_frames(mp4))
    for k in range(n_frames):
      frame = frames[int(round((gt['start'] + 0.5 * k) * FPS))]
      expect = faces.center_crop(video.mosei_frame(frame))
      np.testing.assert_array_equal(ex['faces'][k], expect)


def test_img_interval_and_parallel_workers_match_serial(mosei_raw, tmp_path):
  root, truth = mosei_raw
  serial = examples('mosei', root, 'valid', cache_dir=tmp_path / 's',
                    img_interval=1000)
  pooled = examples('mosei', root, 'valid', cache_dir=tmp_path / 'p',
                    img_interval=1000, num_workers=2)
  assert [c for c, _ in serial] == [c for c, _ in pooled]
  for (clip_id, a), (_, b) in zip(serial, pooled):
    gt = truth[clip_id]
    assert a['n_frames'] == math.ceil(gt['end'] - gt['start'] - 1e-9)
    np.testing.assert_array_equal(a['faces'], b['faces'])
    np.testing.assert_array_equal(a['spec'], b['spec'])
  preprocess.shutdown_workers()


def test_iemocap_uses_the_speaker_half_and_channel(iemocap_raw, tmp_path):
  root, truth = iemocap_raw
  out = []
  for split in readers.SPLITS:
    out += examples('iemocap', root, split, cache_dir=tmp_path)
  assert {t['side'] for t in truth.values()} == {'left', 'right'}
  assert len(out) == sum(t['code'] != 'xxx' for t in truth.values())
  for clip_id, ex in out:
    gt = truth[clip_id]
    dialog_dir = root / f"Session{int(clip_id[3:5])}" / 'dialog'
    frames = all_frames(dialog_dir / 'avi' / 'DivX' / f"{gt['dialog']}.avi")
    for k in range(ex['n_frames']):
      frame = frames[int(round((gt['start'] + 0.5 * k) * FPS))]
      expect = faces.center_crop(video.half_frame(frame, gt['side']))
      np.testing.assert_array_equal(ex['faces'][k], expect)
    spec, _ = independent_spec(dialog_dir / 'wav' / f"{gt['dialog']}.wav",
                               gt['start'], gt['end'],
                               0 if gt['side'] == 'left' else 1)
    assert_spec_close(ex['spec'], spec)
    np.testing.assert_array_equal(ex['labels'], gt['labels'])


def test_processed_layout_examples(tmp_path):
  root = tmp_path / 'IEMOCAP_RAW_PROCESSED'
  folder = root / 'Ses01F_impro01' / 'Ses01F_impro01_M000'
  folder.mkdir(parents=True)
  for i in range(4):
    for side, color in (('L', (0, 255, 0)), ('R', (0, 0, 255))):
      img = np.zeros((60, 50, 3), np.uint8)
      img[:] = color
      img[0, 0] = i
      cv2.imwrite(str(folder / f'image_{side}_{i}.jpg'), img)
  t = np.arange(8000) / 16000
  for side, f in (('L', 300), ('R', 700)):
    wavfile.write(folder / f'audio_{side}.wav', 16000,
                  (0.3 * np.sin(2 * np.pi * f * t) * 32767).astype(np.int16))
  import pickle  # pylint: disable=g-import-not-at-top
  with open(root / 'meta.pkl', 'wb') as f:
    pickle.dump({'Ses01F_impro01_M000': {'text': 'ok', 'label': 'neu'}}, f)
  (tmp_path / 'splits').mkdir()
  for split in readers.SPLITS:
    (tmp_path / 'splits' / f'{split}.txt').write_text('Ses01F_impro01_M000\n')
  (_, ex), = examples('iemocap', tmp_path, cache_dir=tmp_path / 'c',
                      splits_dir=tmp_path / 'splits', img_interval=1000)
  assert ex['n_frames'] == 2                       # every 2nd 500 ms image
  # R images are red (BGR (0, 0, 255) on disk), L images green.
  assert ex['faces'][..., 0].mean() > 200 and ex['faces'][..., 1].max() < 60
  spec, _ = independent_spec(folder / 'audio_R.wav', 0, 10)
  assert_spec_close(ex['spec'], spec)


def _corrupt(root, truth):
  """Breaks the raw data in every way we skip; returns {clip id: reason}."""
  by_video = {}
  for clip_id, gt in sorted(truth.items()):
    by_video.setdefault(gt['video'], []).append(clip_id)
  videos = sorted(by_video)
  assert len(videos) >= 6
  vdir = root / 'Videos' / 'Full' / 'Combined'
  adir = root / 'Audio' / 'WAV_16000'
  expect = {}
  (vdir / f'{videos[0]}.mp4').write_bytes(b'\x00garbage' * 500)
  expect.update({c: ('bad_video', f'{videos[0]}.mp4')
                 for c in by_video[videos[0]]})
  (adir / f'{videos[1]}.wav').unlink()
  expect.update({c: ('missing_audio', f'{videos[1]}.wav')
                 for c in by_video[videos[1]]})
  wavfile.write(adir / f'{videos[2]}.wav', 16000, np.zeros(0, np.int16))
  expect.update({c: ('no_audio', f'{videos[2]}.wav')
                 for c in by_video[videos[2]]})
  writer = cv2.VideoWriter(str(vdir / f'{videos[3]}.mp4'),
                           cv2.VideoWriter_fourcc(*'mp4v'), FPS, (160, 120))
  writer.write(np.zeros((120, 160, 3), np.uint8))  # 1 frame: clips are later
  writer.release()
  expect.update({c: ('no_frames', f'{videos[3]}.mp4')
                 for c in by_video[videos[3]]})
  first, second = by_video[videos[4]][:2]
  tr = root / 'Transcript' / 'Combined' / f'{videos[4]}.txt'
  tr.write_text(tr.read_text().replace(truth[first]['text'], ' '))
  expect[first] = ('empty_transcript', tr.name)
  for csv_path in (root / 'Labels').glob('*.csv'):
    lines = csv_path.read_text().splitlines(keepends=True)
    video_id, clip = second.rsplit('_', 1)
    lines = [l.replace(',0,', ',abc,', 1)
             if f',{video_id},{clip},' in l else l for l in lines]
    csv_path.write_text(''.join(lines))
  expect[second] = ('unknown_label', 'batch_')
  return expect


def test_bad_input_is_skipped_logged_and_the_build_finishes(mosei_raw,
                                                            tmp_path):
  src, truth = mosei_raw
  root = tmp_path / 'raw'
  shutil.copytree(src, root)
  expect = _corrupt(root, truth)
  splits = tmp_path / 'splits'
  splits.mkdir()
  ids = sorted(truth) + ['not_in_data_3']
  (splits / 'train.txt').write_text('\n'.join(ids) + '\n')
  report = preprocess.SkipReport()
  out = examples('mosei', root, splits_dir=splits, cache_dir=tmp_path / 'c',
                 report=report)
  good = [c for c in sorted(truth) if c not in expect]
  assert [c for c, _ in out] == good and good
  log = preprocess.read_skip_log(tmp_path / 'c')
  got = {r['clip_id']: (r['reason'], r['file']) for r in log}
  assert set(got) == set(expect)
  for clip_id, (reason, file_part) in expect.items():
    assert got[clip_id][0] == reason, clip_id
    assert file_part in got[clip_id][1], (clip_id, got[clip_id])
  assert report.missing == ['not_in_data_3']
  assert report.yielded == len(good)
  assert sum(report.skipped.values()) == len(expect)
  summary = json.loads((tmp_path / 'c' / 'summary_mosei_train.json')
                       .read_text())
  assert summary['missing_count'] == 1 and summary['yielded'] == len(good)
  assert summary['skipped'] == dict(report.skipped)


def test_rerun_resumes_from_the_cache(mosei_raw, tmp_path, monkeypatch):
  root, _ = mosei_raw
  calls = []
  real = preprocess.compute_clip
  monkeypatch.setattr(preprocess, 'compute_clip',
                      lambda clip, opts: calls.append(clip.clip_id) or real(
                          clip, opts))
  cache = tmp_path / 'c'
  # An interrupted build: the consumer stops after 3 examples.
  gen = preprocess.iter_examples('mosei', root, 'train', cache_dir=cache,
                                 splits_dir=root / 'splits',
                                 face_detector='center', num_workers=0,
                                 progress=False)
  first = [next(gen) for _ in range(3)]
  gen.close()
  assert len(calls) == 3
  full = examples('mosei', root, cache_dir=cache)
  assert len(calls) == len(full)                # only the rest computed
  for (c1, e1), (c2, e2) in zip(first, full):
    assert c1 == c2
    np.testing.assert_array_equal(e1['faces'], e2['faces'])
  key = preprocess.Options(face_detector='center').key('mosei', 'raw')
  files = sorted((cache / key).glob('*.npz'))
  assert len(files) == len(full)
  mtimes = {f: os.stat(f).st_mtime_ns for f in files}
  calls.clear()
  again = examples('mosei', root, cache_dir=cache)
  assert not calls
  assert {f: os.stat(f).st_mtime_ns for f in files} == mtimes
  for (_, a), (_, b) in zip(full, again):
    np.testing.assert_array_equal(a['spec'], b['spec'])
    assert a['n_frames'] == b['n_frames']
  files[0].write_bytes(b'truncated')            # unreadable -> recomputed
  files[1].unlink()
  examples('mosei', root, cache_dir=cache)
  assert sorted(calls) == sorted(f.stem for f in files[:2])


def test_cache_write_is_atomic(tmp_path, monkeypatch):
  path = tmp_path / 'clip.npz'
  arrays = {'faces': np.zeros((1, 48, 48, 3), np.uint8),
            'spec': np.zeros((1, 128, 32), np.float16),
            'face_fallbacks': np.int64(0)}
  preprocess.save_arrays(path, arrays)
  before = path.read_bytes()

  def broken_savez(f, **kw):
    f.write(b'half a file')
    raise OSError('disk full')

  monkeypatch.setattr(np, 'savez', broken_savez)
  with pytest.raises(OSError):
    preprocess.save_arrays(path, arrays)
  assert path.read_bytes() == before
  assert [p.name for p in tmp_path.iterdir()] == ['clip.npz']


def test_video_rules():
  big = np.arange(720 * 1280 * 3, dtype=np.uint32).reshape(720, 1280, 3)
  big = (big % 251).astype(np.uint8)
  out = video.mosei_frame(big)
  half = cv2.resize(big, (640, 360), interpolation=cv2.INTER_AREA)
  np.testing.assert_array_equal(out, half[:, 140:500])
  # No padding: a side below 360 px is kept whole.
  small = big[:240, :400]
  np.testing.assert_array_equal(video.mosei_frame(small), small[:, 20:380])
  np.testing.assert_array_equal(video.half_frame(big, 'right'), big[:, 640:])
  times = video.sample_times(10.0, 400.0, 500)
  assert len(times) == 560 and times[-1] == pytest.approx(279.5)
  assert len(video.sample_times(0.0, 1.2, 500)) == 3


def test_mtcnn_detects_most_synthetic_faces(mosei_raw, tmp_path):
  """Two worker processes, each building its MTCNN once."""
  root, _ = mosei_raw
  report = preprocess.SkipReport()
  out = examples('mosei', root, 'train', cache_dir=tmp_path,
                 face_detector='mtcnn', report=report, num_workers=2)
  preprocess.shutdown_workers()
  assert len(out) == report.computed and report.face_frames > 10
  assert report.face_fallbacks / report.face_frames < 0.3
  assert report.mtcnn_per_process
  assert set(report.mtcnn_per_process.values()) == {1}
  assert os.getpid() not in report.mtcnn_per_process
  # A detected face is cropped tighter than the centre of the whole frame.
  center = examples('mosei', root, 'train', cache_dir=tmp_path / 'center')
  differs = [not np.array_equal(a['faces'], b['faces'])
             for (_, a), (_, b) in zip(out, center)]
  assert sum(differs) >= len(out) // 2


def test_beam_is_optional(mosei_raw, tmp_path):
  from data_pipelines import beam as dp_beam  # pylint: disable=g-import-not-at-top
  try:
    import apache_beam  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    assert not dp_beam.describe()['beam']
    root, _ = mosei_raw
    with pytest.raises(ImportError, match='pip install apache-beam'):
      dp_beam.examples_transform('mosei', root, 'train', cache_dir=tmp_path,
                                 splits_dir=root / 'splits')
  else:
    assert dp_beam.describe()['beam']


def _processed_iemocap(tmp_path, audios):
  """An IEMOCAP processed layout: {utterance id: (rate, wave)} -> raw dir.

  Two 50x60 images per side; wave is [S] or [S, 2] floats in [-1, 1],
  written as 16-bit PCM to the speaker's side (audio_L / audio_R).
  """
  root = tmp_path / 'raw' / 'IEMOCAP_RAW_PROCESSED'
  meta = {}
  for uid, (rate, wave) in audios.items():
    folder = root / readers.iemocap.dialog_of(uid) / uid
    folder.mkdir(parents=True)
    for i in range(2):
      for s in 'LR':
        cv2.imwrite(str(folder / f'image_{s}_{i}.jpg'),
                    np.full((60, 50, 3), 90 + i, np.uint8))
    s = 'L' if readers.iemocap.speaker_side(uid) == 'left' else 'R'
    wavfile.write(folder / f'audio_{s}.wav', rate,
                  np.round(np.asarray(wave) * 32767).astype(np.int16))
    meta[uid] = {'text': 'words', 'label': 'neu'}
  import pickle  # pylint: disable=g-import-not-at-top
  with open(root / 'meta.pkl', 'wb') as f:
    pickle.dump(meta, f)
  splits = tmp_path / 'splits'
  splits.mkdir()
  for split in readers.SPLITS:
    (splits / f'{split}.txt').write_text('\n'.join(audios) + '\n')
  return tmp_path / 'raw', splits


def test_44k_stereo_is_resampled_counted_and_a_short_clip_skipped(tmp_path):
  """Summary counts the resampled clips (from the cache too); a clip of
  300 samples (19 ms, under one 400-sample frame) is skipped as short_audio
  with its id and duration."""
  t44, t16 = np.arange(22050) / 44100, np.arange(8000) / 16000
  stereo = np.stack([0.4 * np.sin(2 * np.pi * 440 * t44),
                     0.2 * np.sin(2 * np.pi * 440 * t44)], axis=1)
  ok16, resampled, short = ('Ses01F_impro01_F000', 'Ses01F_impro01_M001',
                            'Ses01F_impro01_F002')
  raw, splits = _processed_iemocap(tmp_path, {
      ok16: (16000, 0.3 * np.sin(2 * np.pi * 440 * t16)),
      resampled: (44100, stereo),
      short: (16000, np.full(300, 0.1))})
  cache = tmp_path / 'c'
  report = preprocess.SkipReport()
  out = dict(examples('iemocap', raw, splits_dir=splits, cache_dir=cache,
                      report=report))
  assert sorted(out) == [ok16, resampled]
  # The stereo 44.1 kHz clip: the mono mean (0.3 amplitude) at 16 kHz, so
  # the spectrogram of the 16 kHz clip with the same tone (0.5 s: 41 frames).
  chex.assert_shape(out[resampled]['spec'], (2, 128, 32))
  got = out[resampled]['spec'].astype(np.float64)
  want = out[ok16]['spec'].astype(np.float64)
  assert np.linalg.norm(got - want) < 5e-3 * np.linalg.norm(want)
  assert report.resampled == {44100: 1}
  assert report.skipped == {'short_audio': 1}
  assert 'audio resampled to 16 kHz for 1 examples (44100 Hz: 1)' in (
      report.summary())
  summary = json.loads((cache / 'summary_iemocap_train.json').read_text())
  assert summary['resampled'] == {'44100': 1}
  (record,) = preprocess.read_skip_log(cache)
  assert record['clip_id'] == short and record['reason'] == 'short_audio'
  assert record['file'].endswith(f'{short}/audio_L.wav')
  assert short in record['detail'] and '0.019 s' in record['detail']
  # From the cache: still counted.  A cache file written before resampling
  # (no audio_rate) is recomputed.
  again = preprocess.SkipReport()
  examples('iemocap', raw, splits_dir=splits, cache_dir=cache, report=again)
  assert again.from_cache == 2 and again.resampled == {44100: 1}
  key = preprocess.Options(face_detector='center').key('iemocap', 'processed')
  path = cache / key / f'{resampled}.npz'
  with np.load(path) as z:
    old = {k: z[k] for k in ('faces', 'spec', 'face_fallbacks')}
  np.savez(path, **old)
  third = preprocess.SkipReport()
  examples('iemocap', raw, splits_dir=splits, cache_dir=cache, report=third)
  assert (third.from_cache, third.computed) == (1, 1)
  assert third.resampled == {44100: 1}


def test_fast_path_computes_the_old_arrays(mosei_raw, iemocap_raw):
  """compute_clip (PyAV decoding, batched FastMTCNN) == the code before the
  fast path (OpenCV decoding of every frame, the package's call per clip),
  array for array; compute_clips batches several clips the same way."""
  opts = preprocess.Options(face_detector='mtcnn')
  clips = []
  for dataset, (root, _) in (('mosei', mosei_raw), ('iemocap', iemocap_raw)):
    found = readers.read_split(dataset, root, 'train',
                               splits_dir=root / 'splits')
    clips += found.clips[:2]
  many = preprocess.compute_clips(clips, opts)
  for clip, batched in zip(clips, many):
    old = preprocess.compute_clip(clip, opts, reference=True)
    new = preprocess.compute_clip(clip, opts)
    assert list(new) == list(old) == list(batched)
    for key in old:
      np.testing.assert_array_equal(new[key], old[key])
      np.testing.assert_array_equal(batched[key], old[key])


def test_options_key_and_opt_in_min_face_size():
  """The default cache key is unchanged (existing caches stay valid); the
  opt-in detector setting gets its own cache folder."""
  assert (preprocess.Options().key('mosei', 'raw') ==
          'mosei_raw_i500_mel_mtcnn')
  assert (preprocess.Options(min_face_size=40).key('mosei', 'raw') ==
          'mosei_raw_i500_mel_mtcnn_mfs40')
  assert (preprocess.Options(face_detector='center', min_face_size=40)
          .key('mosei', 'raw') == 'mosei_raw_i500_mel_center')


@pytest.mark.slow
def test_sigkill_mid_build_then_rerun_computes_each_clip_once(
    mosei_raw, tmp_path, monkeypatch):
  """``python -m data_pipelines.preprocess`` killed with SIGKILL once its
  first clip is cached; the rerun computes only the clips not cached, and
  the result equals an uninterrupted build."""
  root, _ = mosei_raw
  cache = tmp_path / 'cache'
  opts = dict(face_detector='mtcnn', img_interval=100)
  key = preprocess.Options(**opts).key('mosei', 'raw')
  command = [sys.executable, '-m', 'data_pipelines.preprocess',
             '--dataset', 'mosei', '--raw_dir', str(root), '--cache_dir',
             str(cache), '--splits', 'train', '--splits_dir',
             str(root / 'splits'), '--num_workers', '0',
             '--face_detector', 'mtcnn', '--img_interval', '100']
  proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  deadline = time.time() + 300
  try:
    while not list((cache / key).glob('*.npz')):
      assert proc.poll() is None, 'the build ended before it was killed'
      assert time.time() < deadline
      time.sleep(0.02)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  before = {f.name: f.stat().st_mtime_ns for f in (cache / key).glob('*.npz')}
  calls = []
  real = preprocess.compute_clip
  monkeypatch.setattr(preprocess, 'compute_clip', lambda clip, o, **kw: (
      calls.append(clip.clip_id) or real(clip, o, **kw)))
  resumed = examples('mosei', root, cache_dir=cache, **opts)
  assert 0 < len(before) < len(resumed), (len(before), len(resumed))
  assert sorted(calls) == sorted(c for c, _ in resumed
                                 if f'{c}.npz' not in before)
  assert {n: (cache / key / n).stat().st_mtime_ns for n in before} == before
  monkeypatch.setattr(preprocess, 'compute_clip', real)
  fresh = examples('mosei', root, cache_dir=tmp_path / 'fresh', **opts)
  assert [c for c, _ in fresh] == [c for c, _ in resumed]
  for (_, a), (_, b) in zip(fresh, resumed):
    np.testing.assert_array_equal(a['faces'], b['faces'])
    np.testing.assert_array_equal(a['spec'], b['spec'])
