"""The manifest dataset, data side: reader, video audio track, preprocessing.

Fast: a few tiny synthetic mp4s, no TFDS, no model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from data_pipelines import audio
from data_pipelines import preprocess
from data_pipelines import readers
from data_pipelines import synthetic
from data_pipelines.readers import manifest

LABELS = ('calm', 'joy', 'anger')
SMALL = {'frame_size': (48, 48), 'clip_seconds': (0.6, 0.9)}


@pytest.fixture(scope='module')
def single(tmp_path_factory) -> Path:
  out = tmp_path_factory.mktemp('single')
  return synthetic.write_manifest(out, 7, 0, LABELS, False, **SMALL)


@pytest.fixture(scope='module')
def multi(tmp_path_factory) -> Path:
  out = tmp_path_factory.mktemp('multi')
  return synthetic.write_manifest(out, 8, 1, LABELS, True, fmt='jsonl',
                                  **SMALL)


def _plain_rows(path: Path) -> list[dict]:
  """The manifest's rows as dicts of strings, parsed without the reader."""
  if path.suffix == '.csv':
    with open(path, newline='') as f:
      return list(csv.DictReader(f))
  rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
  return [{k: '' if v is None else str(v) for k, v in r.items()}
          for r in rows]


def _seconds(cell: str) -> float | None:
  return float(cell) if cell else None


def _check_against_plain_parse(path: Path, names: tuple[str, ...],
                               expected_labels) -> None:
  rows = _plain_rows(path)
  total = 0
  for split in readers.SPLITS:
    found = readers.read_split('manifest', path, split)
    want = [r for r in rows if r['split'] == split]
    assert [c.clip_id for c in found.clips] == [r['clip_id'] for r in want]
    assert not found.skipped and not found.missing
    assert found.layout == 'raw'
    total += len(found.clips)
    for clip, row in zip(found.clips, want):
      assert clip.dataset == 'manifest'
      assert clip.text == row['text']
      assert clip.labels.dtype == np.float32
      np.testing.assert_array_equal(clip.labels, expected_labels(row))
      assert clip.video_path == str(path.parent / row['video'])
      assert clip.audio_path == (str(path.parent / row['audio'])
                                 if row['audio'] else None)
      assert clip.start == _seconds(row['start'])
      assert clip.end == _seconds(row['end'])
  assert total == len(rows)
  assert manifest.label_set(path)[0] == names


def test_single_label_matches_plain_parse(single):
  rows = _plain_rows(single)
  names = tuple(sorted({r['label'] for r in rows}))
  assert names == tuple(sorted(LABELS))       # every label drawn at least once
  assert manifest.label_set(single) == (names, False)
  _check_against_plain_parse(
      single, names,
      lambda r: [float(r['label'] == n) for n in names])
  # Every split has a clip; one clip has its own wav, some have a span.
  assert {r['split'] for r in rows} == set(readers.SPLITS)
  assert sum(bool(r['audio']) for r in rows) == 1
  assert any(r['start'] for r in rows) and any(not r['start'] for r in rows)


def test_multi_label_matches_plain_parse(multi):
  assert multi.suffix == '.jsonl'
  assert manifest.label_set(multi) == (LABELS, True)
  _check_against_plain_parse(
      multi, LABELS,
      lambda r: [float(float(r[f'label:{n}']) > 0) for n in LABELS])
  truth = json.loads((multi.parent / 'ground_truth.json').read_text())
  clips = [c for s in readers.SPLITS
           for c in readers.read_split('manifest', multi, s).clips]
  for clip in clips:
    np.testing.assert_array_equal(clip.labels, truth[clip.clip_id]['labels'])
  # The rule is "> 0": some absent emotions are written as negative scores.
  rows = _plain_rows(multi)
  assert any(float(r[f'label:{n}']) < 0 for r in rows for n in LABELS)


def test_manifest_folder_and_splits_dir(single, tmp_path):
  by_file = readers.read_split('manifest', single, 'train')
  by_dir = readers.read_split('manifest', single.parent, 'train')
  assert [c.clip_id for c in by_dir.clips] == [c.clip_id
                                               for c in by_file.clips]
  with pytest.raises(ValueError, match='split column'):
    readers.read_split('manifest', single, 'train', splits_dir=tmp_path)
  with pytest.raises(ValueError, match='split must be'):
    readers.read_split('manifest', single, 'dev')


# ------------------------------------------------------------------- errors


def _write(tmp_path: Path, text: str, name: str = 'm.csv') -> Path:
  path = tmp_path / name
  path.write_text(text)
  return path


@pytest.mark.parametrize('text, column', [
    ('clip_id,video,split,label\na,v.mp4,train,joy\n', 'text'),
    ('clip_id,text,split,label\na,hi,train,joy\n', 'video'),
    ('video,text,split,label\nv.mp4,hi,train,joy\n', 'clip_id'),
    ('clip_id,video,text,label\na,v.mp4,hi,joy\n', 'split'),
])
def test_missing_required_column(tmp_path, text, column):
  path = _write(tmp_path, text)
  with pytest.raises(ValueError, match=rf"m\.csv: no column '{column}'"):
    manifest.label_set(path)


def test_malformed_manifests_name_file_and_column(tmp_path):
  head = 'clip_id,video,text,split'
  cases = [
      (f'{head}\na,v.mp4,hi,train\n', 'no label column'),
      (f'{head},label,label:joy\na,v.mp4,hi,train,joy,1\n',
       "both a 'label' column and label:<name> columns"),
      (f'{head},label\na,v.mp4,hi,train,joy\nb,v.mp4,hi,test,joy\n'
       'a,v.mp4,hi,valid,calm\n',
       r"line 4, column clip_id: duplicate clip id 'a' \(first on line 2\)"),
      (f'{head},label,label\na,v.mp4,hi,train,joy,joy\n',
       "column 'label' appears twice"),
      (f'{head},label\na,v.mp4,hi,train,\n', "column 'label' is empty"),
      (f'{head},label\n,v.mp4,hi,train,joy\n', 'line 2, column clip_id'),
  ]
  for i, (text, message) in enumerate(cases):
    path = _write(tmp_path, text, f'm{i}.csv')
    with pytest.raises(ValueError, match=message) as e:
      readers.read_split('manifest', path, 'train')
    assert str(path) in str(e.value)
  path = _write(tmp_path, '{"clip_id": "a"}\n\n[1, 2]\n', 'm.jsonl')
  with pytest.raises(ValueError, match=r'm\.jsonl, line 3: expected a JSON '
                     'object'):
    manifest.label_set(path)


def test_bad_rows_are_skips_naming_file_line_column(tmp_path):
  (tmp_path / 'v.mp4').write_bytes(b'not looked at by the reader')
  path = _write(tmp_path, '\n'.join([
      'clip_id,video,audio,start,end,text,split,label:joy,label:anger',
      'ok,v.mp4,,,,fine,train,1,0',
      'novideo,gone.mp4,,,,fine,train,1,0',
      'nowav,v.mp4,gone.wav,,,fine,train,1,0',
      'notext,v.mp4,,,,  ,train,1,0',
      'badlabel,v.mp4,,,,fine,train,1,lots',
      'emptylabel,v.mp4,,,,fine,train,,0',
      'badspan,v.mp4,,2.0,1.0,fine,train,0,1',
      'badstart,v.mp4,,soon,,fine,train,0,1',
      'elsewhere,v.mp4,,,,fine,dev,0,1',
      'testclip,gone.mp4,,,,,test,0,1',
  ]) + '\n')
  found = readers.read_split('manifest', path, 'train')
  assert [c.clip_id for c in found.clips] == ['ok']
  want = {  # id -> (reason, line, column)
      'novideo': ('missing_video', 3, 'video'),
      'nowav': ('missing_audio', 4, 'audio'),
      'notext': ('empty_transcript', 5, 'text'),
      'badlabel': ('unknown_label', 6, 'label:anger'),
      'emptylabel': ('unknown_label', 7, 'label:joy'),
      'badspan': ('bad_time', 8, 'end'),
      'badstart': ('bad_time', 9, 'start'),
      'elsewhere': ('unknown_split', 10, 'split'),
  }
  assert {s.clip_id: s.reason for s in found.skipped} == {
      k: v[0] for k, v in want.items()}
  for skip in found.skipped:
    _, line, column = want[skip.clip_id]
    assert f'{path}, line {line}, column {column}:' in skip.detail
  by_id = {s.clip_id: s for s in found.skipped}
  assert by_id['novideo'].file == str(tmp_path / 'gone.mp4')
  assert by_id['notext'].file == str(path)
  assert "'lots' is not a number" in by_id['badlabel'].detail
  # A row of no known split is reported once (with train), not per split.
  test = readers.read_split('manifest', path, 'test')
  assert [s.clip_id for s in test.skipped] == ['testclip']
  assert test.skipped[0].reason == 'empty_transcript'
  assert not readers.read_split('manifest', path, 'valid').skipped


# -------------------------------------------------------------------- audio


def _tone(freq: float, sr: int, seconds: float = 1.0) -> np.ndarray:
  t = np.arange(int(seconds * sr)) / sr
  return 0.5 * np.sin(2 * np.pi * freq * t)


def _blank_frames(n: int = 30):
  return [np.zeros((48, 48, 3), np.uint8)] * n


@pytest.mark.parametrize('freq', [440.0, 1500.0])
def test_video_audio_track_matches_16k_wav(tmp_path, freq):
  """A tone in an mp4's AAC track (44.1 kHz) has the mel spectrum of a wav."""
  mp4 = tmp_path / 'tone.mp4'
  synthetic.write_av_mp4(mp4, _blank_frames(), (48, 48), _tone(freq, 44100),
                         44100)
  wav = tmp_path / 'tone.wav'
  wavfile.write(wav, 16000, (_tone(freq, 16000) * 32767).astype(np.int16))
  a, rate = audio.read_video_audio(mp4, 0.2, 0.8)
  b, _ = audio.read_clip_audio(wav, start=0.2, end=0.8)
  assert rate == 44100 and a.shape == b.shape == (9600,)
  spec_a = audio.clip_spectrogram(a).astype(np.float64).sum(axis=(0, 2))
  spec_b = audio.clip_spectrogram(b).astype(np.float64).sum(axis=(0, 2))
  assert spec_a.argmax() == spec_b.argmax()
  if freq == 440.0:
    assert spec_b.argmax() == 24            # not 17: the 16 kHz mel scale
  # AAC is lossy: the energy at the peak agrees within 5 %.
  assert spec_a.max() == pytest.approx(spec_b.max(), rel=0.05)


def test_video_audio_span_is_placed_in_time(tmp_path):
  """[start, end) of the track: a tone starting at 2.0 s starts 0.1 s in."""
  sr = 48000
  wave = np.where(np.arange(4 * sr) >= 2 * sr, _tone(440, sr, 4.0), 0.0)
  mp4 = tmp_path / 'late.mp4'
  synthetic.write_av_mp4(mp4, _blank_frames(120), (48, 48), wave, sr)
  part, _ = audio.read_video_audio(mp4, 1.9, 2.1)
  whole, _ = audio.read_video_audio(mp4)
  assert part.shape == (3200,)
  onset = np.argmax(np.abs(part) > 0.05) / audio.SAMPLE_RATE
  assert onset == pytest.approx(0.1, abs=0.002)
  np.testing.assert_allclose(part, whole[30400:33600], atol=1e-5)


def test_clip_spec_audio_sources(tmp_path):
  """No wav: the video's track; no track either: a no_audio skip."""
  mp4 = tmp_path / 'tone.mp4'
  synthetic.write_av_mp4(mp4, _blank_frames(), (48, 48), _tone(440, 44100),
                         44100)
  clip = readers.Clip('c', 'manifest', 'raw', 'hi', np.ones(3, np.float32),
                      audio_path=None, video_path=str(mp4))
  spec, rate = preprocess.clip_spec(clip, log_mel=False)
  assert rate == 44100 and spec.shape[1:] == (128, 32)
  silent = tmp_path / 'silent.mp4'
  synthetic.write_av_mp4(silent, _blank_frames(), (48, 48))
  clip.video_path, clip.audio_path = str(silent), ''
  with pytest.raises(preprocess.ClipError) as e:
    preprocess.clip_spec(clip, log_mel=False)
  assert e.value.reason == 'no_audio' and 'no audio track' in e.value.detail
  clip.video_path = str(tmp_path / 'gone.mp4')
  with pytest.raises(preprocess.ClipError) as e:
    preprocess.clip_spec(clip, log_mel=False)
  assert e.value.reason == 'missing_video'


# ------------------------------------------------------------ end to end


def test_iter_examples_end_to_end(single, tmp_path):
  truth = json.loads((single.parent / 'ground_truth.json').read_text())
  names, _ = manifest.label_set(single)
  report = preprocess.SkipReport()
  examples = dict(preprocess.iter_examples(
      'manifest', single, 'train', cache_dir=tmp_path, face_detector='center',
      num_workers=1, progress=False, report=report))
  train = [k for k, v in truth.items() if v['split'] == 'train']
  assert list(examples) == train
  for clip_id, ex in examples.items():
    c, m, t = ex['spec'].shape
    assert (m, t) == (128, 32) and c >= 1 and ex['spec'].dtype == np.float16
    f, h, w, rgb = ex['faces'].shape
    assert (h, w, rgb) == (48, 48, 3) and f >= 1
    assert ex['faces'].dtype == np.uint8
    assert ex['labels'].shape == (len(names),)
    want = dict(zip(LABELS, truth[clip_id]['labels']))
    np.testing.assert_array_equal(ex['labels'], [want[n] for n in names])
    # 1 frame / 500 ms of the clip's span (or of the whole 0.6-0.9 s file).
    assert f == 2
  assert not report.skipped
  # Every clip's audio was 44.1 kHz: the mp4 tracks and the stereo wav.
  assert report.resampled == {44100: len(train)}
  assert any(truth[k]['audio'] for k in train)
