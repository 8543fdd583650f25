"""Synthetic raw releases: real layouts, and labels learnable per modality."""

import csv
import json

import cv2
import numpy as np
import pytest
from scipy.io import wavfile
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import cross_val_score

from data_pipelines import audio
from data_pipelines import faces
from data_pipelines import synthetic


def test_mosei_raw_layout(tmp_path):
  truth = synthetic.write_mosei_raw(tmp_path, num_clips=20, seed=7,
                                    frame_size=(160, 120),
                                    clip_seconds=(1.0, 1.5))
  assert len(truth) == 20
  assert json.loads((tmp_path / 'ground_truth.json').read_text()) == truth
  n_labels = [sum(t['labels']) for t in truth.values()]
  assert set(n_labels) == {1, 2}                    # sometimes two emotions
  assert n_labels.count(1) > n_labels.count(2)      # usually one
  splits = {s: (tmp_path / 'splits' / f'{s}.txt').read_text().split()
            for s in ('train', 'valid', 'test')}
  assert sorted(sum(splits.values(), [])) == sorted(truth)
  rows = []
  for path in sorted((tmp_path / 'Labels').glob('*.csv')):
    with open(path, newline='') as f:
      reader = csv.DictReader(f)
      assert {'Input.VIDEO_ID', 'Input.CLIP', 'Answer.anger',
              'Answer.disgust', 'Answer.fear', 'Answer.happiness',
              'Answer.sadness', 'Answer.surprise'} <= set(reader.fieldnames)
      rows += list(reader)
  assert len(rows) == 3 * len(truth)                # one row per annotator
  for video in {t['video'] for t in truth.values()}:
    cap = cv2.VideoCapture(str(tmp_path / 'Videos' / 'Full' / 'Combined' /
                               f'{video}.mp4'))
    assert cap.isOpened() and cap.get(cv2.CAP_PROP_FPS) == 30
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 160
    sr, wave = wavfile.read(tmp_path / 'Audio' / 'WAV_16000' / f'{video}.wav')
    assert sr == 16000 and wave.ndim == 1 and wave.dtype == np.int16
    last = max(t['end'] for t in truth.values() if t['video'] == video)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) / 30 >= last
    assert len(wave) / sr >= last
    lines = (tmp_path / 'Transcript' / 'Combined' / f'{video}.txt'
             ).read_text().splitlines()
    assert all(len(l.split('___')) == 5 for l in lines)


def test_iemocap_raw_layout(tmp_path):
  truth = synthetic.write_iemocap_raw(tmp_path, num_dialogs=2, seed=1,
                                      utterances_per_dialog=5, half_size=64,
                                      clip_seconds=(1.0, 1.2))
  for uid, t in truth.items():
    base = tmp_path / f'Session{int(uid[3:5])}' / 'dialog'
    assert (base / 'avi' / 'DivX' / f"{t['dialog']}.avi").is_file()
    sr, wave = wavfile.read(base / 'wav' / f"{t['dialog']}.wav")
    assert sr == 16000 and wave.shape[1] == 2       # stereo
    a, b = int(t['start'] * sr), int(t['end'] * sr)
    own = 0 if t['side'] == 'left' else 1
    assert np.abs(wave[a:b, own]).mean() > 3 * np.abs(wave[a:b, 1 - own]).mean()
    assert uid in (base / 'transcriptions' / f"{t['dialog']}.txt").read_text()
    assert f"\t{uid}\t{t['code']}\t" in (
        base / 'EmoEvaluation' / f"{t['dialog']}.txt").read_text()
    assert sum(t['labels']) == (t['code'] != 'xxx')
  cap = cv2.VideoCapture(str(next(tmp_path.glob('Session*/dialog/avi/DivX/'
                                                '*.avi'))))
  assert cap.isOpened()
  assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH),
          cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (128, 64)


def cv_accuracy(features, labels, alpha=10.0):
  f = (features - features.mean(0)) / (features.std(0) + 1e-6)
  return cross_val_score(RidgeClassifier(alpha=alpha), f, labels, cv=3).mean()


def fft_features(crops):
  """Shift-tolerant features of grey 48x48 crops: low-frequency |FFT|."""
  grey = np.array([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops],
                  np.float32)
  mag = np.abs(np.fft.fft2(grey - grey.mean((1, 2), keepdims=True)))
  low = np.concatenate([mag[:, :12, :12], mag[:, -12:, :12]], axis=1)
  return np.log(low.reshape(len(crops), -1) + 1e-3)


@pytest.mark.parametrize('names', [
    synthetic.EMOTIONS_MOSEI,
    ('anger', 'excited', 'frustrated', 'happiness', 'neutral', 'sadness')])
def test_each_modality_alone_carries_the_label(names):
  rng = np.random.default_rng(0)
  noise = synthetic._noise_texture(rng, 160, 120)
  crops, mels, texts, labels = [], [], [], []
  for _ in range(30):
    for k, name in enumerate(names):
      expr = synthetic._EXPR[name]
      layout = synthetic._face_layout(rng, 160, 120)
      frame = synthetic.render_frame(160, 120, layout, expr, rng, noise)
      crops.append(faces.center_crop(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
      wave = synthetic.voice([expr], 1.0, rng)
      mels.append(np.log(audio.mel_spectrogram(wave, 16000) + 1e-6).mean(1))
      texts.append(synthetic.sentence([name], rng))
      labels.append(k)
  labels = np.array(labels)
  assert cv_accuracy(fft_features(crops), labels) > 0.7     # chance: 1/6
  assert cv_accuracy(np.array(mels), labels) > 0.9
  words = CountVectorizer().fit_transform(texts).toarray().astype(float)
  assert cv_accuracy(words, labels, alpha=1.0) > 0.8
  # Every sentence names its emotion, and no other one.
  for text, k in zip(texts, labels):
    for j, name in enumerate(names):
      hit = any(w in text.split() or (' ' in w and w in text)
                for w in synthetic._WORDS[name])
      assert hit == (j == k), (text, name)
