"""Readers on generated raw releases and on hand-written processed folders."""

import csv
import pickle
import shutil

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from data_pipelines import readers
from data_pipelines import synthetic
from data_pipelines.readers import iemocap
from data_pipelines.readers import mosei


@pytest.fixture(scope='module')
def mosei_raw(tmp_path_factory):
  root = tmp_path_factory.mktemp('mosei_raw')
  truth = synthetic.write_mosei_raw(root, num_clips=12, seed=3,
                                    frame_size=(160, 120),
                                    clip_seconds=(1.0, 1.6))
  return root, truth


@pytest.fixture(scope='module')
def iemocap_raw(tmp_path_factory):
  root = tmp_path_factory.mktemp('iemocap_raw')
  truth = synthetic.write_iemocap_raw(root, num_dialogs=2, seed=5,
                                      utterances_per_dialog=8, half_size=96,
                                      clip_seconds=(1.0, 1.6))
  return root, truth


def split_ids(root, split):
  return (root / 'splits' / f'{split}.txt').read_text().split()


def annotator_sums(root):
  """Independent reading of the label CSVs: clip id -> summed scores."""
  sums = {}
  for path in (root / 'Labels').glob('*.csv'):
    with open(path, newline='') as f:
      for row in csv.DictReader(f):
        key = f"{row['Input.VIDEO_ID']}_{row['Input.CLIP']}"
        scores = np.array([float(row[f'Answer.{e}'])
                           for e in synthetic.EMOTIONS_MOSEI])
        sums[key] = sums.get(key, 0) + scores
  return sums


@pytest.mark.parametrize('split', readers.SPLITS)
def test_mosei_raw_reader(mosei_raw, split):
  root, truth = mosei_raw
  found = readers.read_split('mosei', root, split, splits_dir=root / 'splits')
  assert found.layout == 'raw' and not found.skipped and not found.missing
  assert [c.clip_id for c in found.clips] == split_ids(root, split)
  sums = annotator_sums(root)
  for clip in found.clips:
    gt = truth[clip.clip_id]
    assert gt['split'] == split
    np.testing.assert_array_equal(clip.labels, gt['labels'])
    np.testing.assert_array_equal(clip.labels, sums[clip.clip_id] > 0)
    assert clip.labels.dtype == np.float32 and 1 <= clip.labels.sum() <= 2
    assert clip.text == gt['text']
    assert (clip.start, clip.end) == (gt['start'], gt['end'])
    assert clip.video_path.endswith(f"Combined/{gt['video']}.mp4")
    assert clip.audio_path.endswith(f"WAV_16000/{gt['video']}.wav")
    assert clip.side is None and clip.channel is None


def test_mosei_transcript_fields_and_missing_ids(mosei_raw, tmp_path):
  line = 'a_b-c___3___1.5___4.25___it was great ___ really\n'
  assert mosei.parse_transcript_line(line) == (
      'a_b-c', '3', 1.5, 4.25, 'it was great ___ really')
  with pytest.raises(ValueError):
    mosei.parse_transcript_line('vid___1___2.0\n')
  root, _ = mosei_raw
  ids = split_ids(root, 'train')[:2] + ['nope_0', 'gone_7']
  (tmp_path / 'train.txt').write_text('\n'.join(ids) + '\n')
  found = readers.read_split('mosei', root, 'train', splits_dir=tmp_path)
  assert found.missing == ['nope_0', 'gone_7']
  assert [c.clip_id for c in found.clips] == ids[:2]


def test_mosei_video_id_forms():
  for cell in ('--qXJuDtHPw', ' --qXJuDtHPw ',
               'https://host/videos/--qXJuDtHPw.mp4',
               'https://host/v/--qXJuDtHPw.MP4?dl=1&next=a/b#t=3',
               '/data/Videos/Full/Combined/--qXJuDtHPw',
               'Combined/--qXJuDtHPw.webm', 'https://host/--qXJuDtHPw/',
               'C:\\mosei\\--qXJuDtHPw.avi'):
    assert mosei.video_id(cell) == '--qXJuDtHPw', cell
  assert mosei.video_id('x/a.b_c') == 'a.b_c'     # not a video extension
  assert [mosei.clip_number(c) for c in ('5', ' 5 ', '5.0', '12', 'x')] == [
      '5', '5', '5', '12', 'x']


URL = 'https://example.org/cmu-mosei/videos/{}.mp4?dl=1'   # synthetic 'url'


def _csv_rows(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def _write_csv(path, rows, columns):
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)


def _url_clip_id(row):
  """Clip id of a label row whose Input.VIDEO_ID has the synthetic URL form."""
  head, tail = URL.split('{}')
  cell = row['Input.VIDEO_ID']
  assert cell.startswith(head) and cell.endswith(tail), cell
  return f"{cell[len(head):-len(tail)]}_{row['Input.CLIP']}"


def _reference_sums(labels_dir, files=None):
  """Plain-python sum of scores per clip over the CSVs (all, or ``files``).

  A column a CSV lacks and a blank cell add nothing (pandas skips the NaN);
  a cell that is not a number makes the sum NaN.
  """
  sums = {}
  for path in sorted(labels_dir.glob('*.csv')):
    if files is not None and path.name not in files:
      continue
    for row in _csv_rows(path):
      if 'Input.CLIP' not in row:
        continue
      total = sums.setdefault(_url_clip_id(row), np.zeros(6))
      for e, name in enumerate(synthetic.EMOTIONS_MOSEI):
        cell = (row.get(f'Answer.{name}') or '').strip()
        try:
          total[e] += float(cell) if cell else 0.0
        except ValueError:
          total[e] = np.nan
  return sums


def test_mosei_real_label_files(tmp_path, caplog):
  """URL-form ids, annotators over two CSVs, one CSV without Answer.fear."""
  root = tmp_path / 'raw'
  truth = synthetic.write_mosei_raw(
      root, num_clips=12, seed=8, frame_size=(64, 48),
      clip_seconds=(0.5, 0.8), video_id_form='url', split_annotators=True)
  labels = root / 'Labels'
  ids = sorted(truth)
  b1, b2 = _csv_rows(labels / 'batch_1.csv'), _csv_rows(labels / 'batch_2.csv')
  columns = list(b1[0])
  assert all({_url_clip_id(r) for r in rows} == set(ids) for rows in (b1, b2))
  only_b2, unlabelled, garbage, blank = ids[:4]
  # only_b2: all rows in batch_2, which loses Answer.fear.
  b2 += [r for r in b1 if _url_clip_id(r) == only_b2]
  b1 = [r for r in b1 if _url_clip_id(r) not in (only_b2, unlabelled)]
  moved = [r for r in b2 if _url_clip_id(r) == unlabelled]
  b2 = [r for r in b2 if _url_clip_id(r) != unlabelled]
  next(r for r in b1 if _url_clip_id(r) == garbage)['Answer.anger'] = 'n/a'
  next(r for r in b1 if _url_clip_id(r) == blank)['Answer.happiness'] = ' '
  _write_csv(labels / 'batch_1.csv', b1, columns)
  _write_csv(labels / 'batch_2.csv', b2,
             [c for c in columns if c != 'Answer.fear'])
  # unlabelled: its rows only in a CSV that cannot name clips.
  _write_csv(labels / 'batch_3.csv', moved,
             [c for c in columns if c != 'Input.CLIP'])

  with caplog.at_level('WARNING'):
    found = mosei.read(root, ids)
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == 'WARNING']
  assert any('batch_2.csv' in w and 'Answer.fear' in w for w in warnings)
  assert any('batch_3.csv' in w and 'Input.CLIP' in w for w in warnings)
  skips = {s.clip_id: s for s in found.skipped}
  assert {c: s.reason for c, s in skips.items()} == {
      only_b2: 'unknown_label', unlabelled: 'no_label',
      garbage: 'unknown_label'}
  assert not found.missing
  assert skips[only_b2].file == str(labels / 'batch_2.csv')
  assert 'Answer.fear' in skips[only_b2].detail
  assert 'batch_2.csv' in skips[only_b2].detail
  for part in ('batch_1.csv', 'batch_2.csv', 'batch_3.csv', 'Input.CLIP'):
    assert part in skips[unlabelled].detail, part
  assert skips[garbage].file == str(labels / 'batch_1.csv')
  assert "Answer.anger = 'n/a'" in skips[garbage].detail

  sums = _reference_sums(labels)
  assert [c.clip_id for c in found.clips] == [
      i for i in ids if i not in skips]
  for clip in found.clips:
    np.testing.assert_array_equal(clip.labels, sums[clip.clip_id] > 0,
                                  err_msg=clip.clip_id)
    assert clip.video_path.endswith(f"{truth[clip.clip_id]['video']}.mp4")
  # The data make the merge matter: either CSV alone gets some label wrong.
  for k in (1, 2):
    part = _reference_sums(labels, {f'batch_{k}.csv'})
    assert any(not np.array_equal(part[c.clip_id] > 0, c.labels > 0)
               for c in found.clips), k


def test_shipped_split_files():
  for dataset, sizes in (('iemocap', (5162, 737, 1481)),
                         ('mosei', (14524, 1765, 4188))):
    for split, size in zip(readers.SPLITS, sizes):
      ids = readers.read_split_ids(dataset, split)
      assert len(ids) == size
  assert all(iemocap.speaker_side(i) in ('left', 'right')
             for i in readers.read_split_ids('iemocap', 'valid'))


def test_speaker_side_rule():
  assert iemocap.speaker_side('Ses01F_impro01_F000') == 'left'
  assert iemocap.speaker_side('Ses01F_impro01_M003') == 'right'
  assert iemocap.speaker_side('Ses05M_script01_3_M033') == 'left'
  assert iemocap.speaker_side('Ses04M_script02_1_F010') == 'right'
  assert iemocap.dialog_of('Ses04F_script01_1_F024') == 'Ses04F_script01_1'
  assert iemocap.session_of('Ses04F_script01_1_F024') == 'Session4'


def test_iemocap_text_rules():
  line = 'Ses01F_impro01_F000 [006.2901-008.2357]: Note: it is 5:30 now.\n'
  assert iemocap.transcript_text(line) == '30 now.'          # quirk 6
  assert iemocap.transcript_text(line, 'full') == 'Note: it is 5:30 now.'


@pytest.mark.parametrize('split', readers.SPLITS)
def test_iemocap_raw_reader(iemocap_raw, split):
  root, truth = iemocap_raw
  found = readers.read_split('iemocap', root, split,
                             splits_dir=root / 'splits')
  assert found.layout == 'raw' and not found.skipped and not found.missing
  assert [c.clip_id for c in found.clips] == split_ids(root, split)
  for clip in found.clips:
    gt = truth[clip.clip_id]
    np.testing.assert_array_equal(clip.labels, gt['labels'])
    assert clip.labels.sum() == 1
    assert clip.text == gt['text'].rsplit(':', 1)[-1].strip()
    assert (clip.start, clip.end) == (gt['start'], gt['end'])
    assert clip.side == gt['side']
    assert clip.channel == (0 if gt['side'] == 'left' else 1)
    assert clip.video_path.endswith(f"avi/DivX/{gt['dialog']}.avi")
    assert clip.audio_path.endswith(f"dialog/wav/{gt['dialog']}.wav")


def test_iemocap_full_text_rule_and_unknown_label(iemocap_raw, tmp_path):
  root, truth = iemocap_raw
  ids = [i for s in readers.SPLITS for i in split_ids(root, s)]
  found = iemocap.read(root, ids, text_rule='full')
  for clip in found.clips:
    assert clip.text == truth[clip.clip_id]['text']
  # An utterance whose label is not one of the 6 classes is skipped.
  dialog = truth[ids[0]]['dialog']
  path = (root / iemocap.session_of(dialog) / 'dialog' / 'EmoEvaluation' /
          f'{dialog}.txt')
  text = path.read_text()
  gt_code = truth[ids[0]]['code']
  patched = tmp_path / 'r'
  shutil.copytree(root, patched)
  target = patched / path.relative_to(root)
  target.write_text(text.replace(f'\t{ids[0]}\t{gt_code}\t',
                                 f'\t{ids[0]}\tsur\t'))
  found = iemocap.read(patched, ids)
  assert [(s.clip_id, s.reason) for s in found.skipped] == [
      (ids[0], 'unknown_label')]
  assert str(target) == found.skipped[0].file
  assert "code 'sur' is not one of the 6 classes" in found.skipped[0].detail


def _jpg(path, color, size=(64, 80)):
  img = np.zeros((size[0], size[1], 3), np.uint8)
  img[:] = color
  cv2.imwrite(str(path), img)


def _wav(path, seconds=0.5):
  wavfile.write(path, 16000, np.zeros(int(16000 * seconds), np.int16))


def test_mosei_processed_layout(tmp_path):
  root = tmp_path / 'MOSEI_RAW_PROCESSED'
  meta = {'vidA_0': {'text': 'so happy', 'label': [0, 0, 0, 2.5, 0, 0.3]},
          'vidA_1': {'text': 'hmm', 'label': 'not a label'},
          'vidB_2': {'text': '  ', 'label': [1, 0, 0, 0, 0, 0]}}
  for clip_id in meta:
    (root / clip_id).mkdir(parents=True)
    for i in (0, 1, 2, 10):        # numeric, not lexical, frame order
      _jpg(root / clip_id / f'image_{i}.jpg', (i, 0, 0))
    _wav(root / clip_id / 'audio.wav')
  with open(root / 'meta.pkl', 'wb') as f:
    pickle.dump(meta, f)
  ids = ['vidA_0', 'vidA_1', 'vidB_2', 'vidC_9']
  for base in (tmp_path, root):     # the parent folder or the folder itself
    found = mosei.read(base, ids)
    assert found.layout == 'processed'
    (clip,) = found.clips
    assert clip.clip_id == 'vidA_0' and clip.text == 'so happy'
    np.testing.assert_array_equal(clip.labels, [0, 0, 0, 1, 0, 1])
    assert [p.rsplit('/', 1)[-1] for p in clip.image_paths] == [
        'image_0.jpg', 'image_1.jpg', 'image_2.jpg', 'image_10.jpg']
    assert clip.audio_path == str(root / 'vidA_0' / 'audio.wav')
    assert [(s.clip_id, s.reason) for s in found.skipped] == [
        ('vidA_1', 'unknown_label'), ('vidB_2', 'empty_transcript')]
    assert found.missing == ['vidC_9']


def test_iemocap_processed_layout(tmp_path):
  root = tmp_path / 'IEMOCAP_RAW_PROCESSED'
  meta = {'Ses01F_impro01_F000': {'text': 'hello there', 'label': 'neu'},
          'Ses01F_impro01_M001': {'text': 'oh no', 'label': 5},
          'Ses01F_impro01_M002': {'text': 'what', 'label': 'xxx'}}
  for uid in meta:
    folder = root / 'Session1_Ses01F_impro01' / uid
    folder.mkdir(parents=True)
    for i in range(3):
      _jpg(folder / f'image_L_{i}.jpg', (0, 200, 0))
      _jpg(folder / f'image_R_{i}.jpg', (0, 0, 200))
    _wav(folder / 'audio_L.wav')
    _wav(folder / 'audio_R.wav')
  with open(root / 'meta.pkl', 'wb') as f:
    pickle.dump(meta, f)
  found = iemocap.read(tmp_path, list(meta))
  assert found.layout == 'processed'
  left, right = found.clips
  assert (left.side, right.side) == ('left', 'right')
  assert all('image_L_' in p for p in left.image_paths)
  assert all('image_R_' in p for p in right.image_paths)
  assert left.audio_path.endswith('audio_L.wav')
  assert right.audio_path.endswith('audio_R.wav')
  np.testing.assert_array_equal(left.labels, iemocap.one_hot('neu'))
  np.testing.assert_array_equal(right.labels, iemocap.one_hot('sad'))
  assert [(s.clip_id, s.reason) for s in found.skipped] == [
      ('Ses01F_impro01_M002', 'unknown_label')]


def test_unrecognised_folder_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='CMU-MOSEI'):
    mosei.detect_layout(tmp_path)
  with pytest.raises(FileNotFoundError, match='IEMOCAP'):
    iemocap.detect_layout(tmp_path)
