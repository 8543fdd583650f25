"""Synthetic raw releases (CMU-MOSEI and IEMOCAP layouts) with learnable labels.

The files look like the real releases, so the whole path (readers, video
decoding, MTCNN, mel spectrogram, TFDS, training) runs on them:

* ``write_mosei_raw``: mp4 videos ('mp4v', 30 fps), 16 kHz mono wavs,
  ``___`` transcripts, label CSVs with one row per annotator and the real
  column names, and split files.  Usually one emotion per clip, sometimes two.
* ``write_iemocap_raw``: side-by-side two-speaker dialogs as XVID .avi, stereo
  wavs (one speaker per channel), transcriptions and EmoEvaluation files; one of
  IEMOCAP's 6 classes per utterance (plus a few 'xxx' utterances outside the
  splits, as in the real release).

Every modality carries the label on its own:
  text  - emotion words among neutral filler words;
  face  - a drawn face whose mouth curve, mouth opening, brows and eyes follow
          the emotion (random position, size, skin tone, background, noise);
          with two emotions the face alternates between them every 0.5 s;
  voice - a harmonic tone whose base pitch and syllable rate follow the
          emotion (random speaker shift, vibrato, noise); two emotions sum.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.io import wavfile

EMOTIONS_MOSEI = ('anger', 'disgust', 'fear', 'happiness', 'sadness',
                  'surprise')
EMOTIONS_IEMOCAP = ('ang', 'exc', 'fru', 'hap', 'neu', 'sad')
FPS = 30
SAMPLE_RATE = 16000
SEGMENT_S = 0.5           # a two-emotion face alternates every 0.5 s


@dataclasses.dataclass(frozen=True)
class Expression:
  """Face parameters (relative to the face size) and voice of an emotion."""
  mouth_curve: float      # > 0 smile, < 0 frown
  mouth_open: float       # 0 closed .. 1 wide open
  brow_tilt: float        # > 0 inner ends down (anger), < 0 inner ends up
  brow_raise: float       # > 0 brows higher
  eye_open: float         # 1 normal
  skew: float             # mouth asymmetry (disgust, frustration)
  pitch: float            # Hz
  rate: float             # syllables per second


_EXPR = {
    'anger': Expression(-0.25, 0.15, 0.7, -0.1, 0.6, 0.0, 200, 6.5),
    'disgust': Expression(-0.2, 0.0, 0.25, 0.0, 0.55, 0.6, 130, 2.5),
    'fear': Expression(-0.1, 0.4, -0.6, 0.35, 1.3, 0.0, 310, 8.0),
    'happiness': Expression(0.65, 0.25, 0.0, 0.05, 0.85, 0.0, 250, 5.0),
    'sadness': Expression(-0.6, 0.0, -0.7, 0.1, 0.75, 0.0, 105, 2.0),
    'surprise': Expression(0.0, 0.8, 0.0, 0.55, 1.4, 0.0, 360, 3.5),
    'excited': Expression(0.75, 0.8, 0.0, 0.35, 1.2, 0.0, 330, 7.0),
    'frustrated': Expression(-0.3, 0.05, 0.45, -0.05, 0.8, 0.45, 150, 4.0),
    'neutral': Expression(0.0, 0.05, 0.0, 0.0, 1.0, 0.0, 170, 3.0),
}
_IEMOCAP_EXPR = dict(zip(EMOTIONS_IEMOCAP, ('anger', 'excited', 'frustrated',
                                            'happiness', 'neutral',
                                            'sadness')))

_WORDS = {
    'anger': ('angry', 'furious', 'mad', 'outraged', 'livid'),
    'disgust': ('disgusting', 'gross', 'nasty', 'revolting', 'sickening'),
    'fear': ('afraid', 'scared', 'terrified', 'nervous', 'frightened'),
    'happiness': ('happy', 'glad', 'delighted', 'joyful', 'wonderful'),
    'sadness': ('sad', 'unhappy', 'depressed', 'miserable', 'heartbroken'),
    'surprise': ('surprised', 'amazed', 'astonished', 'shocked', 'stunned'),
    'excited': ('excited', 'thrilled', 'awesome', 'fantastic', 'pumped'),
    'frustrated': ('frustrated', 'stuck', 'irritated', 'fed up', 'annoying'),
    'neutral': ('okay', 'fine', 'normal', 'usual', 'alright'),
}
_TOPICS = ('the movie', 'my job', 'the weather', 'this game', 'our trip',
           'the dinner', 'the meeting', 'that book', 'the news', 'my car')
_TEMPLATES = ('i feel {w} about {t}', 'honestly {t} made me {w}',
              'i was so {w} when i saw {t}', 'well {t} is just {w}',
              '{t} left me {w} and i think {w2}')


# ------------------------------------------------------------------- faces


def _face_layout(rng: np.random.Generator, width: int, height: int) -> dict:
  """Per-clip face placement and colours."""
  size = rng.uniform(0.58, 0.7) * min(width, height)
  return {
      'cx': width / 2 + rng.uniform(-0.07, 0.07) * width,
      'cy': height / 2 + rng.uniform(-0.06, 0.06) * height,
      'size': size,
      'skin': tuple(float(c) for c in np.clip(
          np.array([95, 135, 190]) * rng.uniform(0.7, 1.15), 0, 255)),  # BGR
      'hair': tuple(float(c) for c in rng.uniform(10, 90, 3)),
      'bg': tuple(float(c) for c in rng.uniform(40, 220, 3)),
  }


def draw_face(img: np.ndarray, layout: dict, expr: Expression,
              jitter: tuple[float, float] = (0.0, 0.0)) -> None:
  """Draws a face (BGR) in place: head, hair, eyes, brows, nose, mouth."""
  s = layout['size']
  cx, cy = layout['cx'] + jitter[0], layout['cy'] + jitter[1]
  p = lambda x, y: (int(round(cx + x * s)), int(round(cy + y * s)))  # noqa
  ax = lambda a, b: (max(1, int(round(a * s))), max(1, int(round(b * s))))  # noqa
  skin = np.array(layout['skin'])
  shade = tuple(skin * 0.72)
  cv2.ellipse(img, p(0, -0.1), ax(0.41, 0.44), 0, 180, 360, layout['hair'],
              -1, cv2.LINE_AA)
  for side in (-1, 1):
    cv2.ellipse(img, p(side * 0.35, 0.02), ax(0.05, 0.1), 0, 0, 360, shade,
                -1, cv2.LINE_AA)                                      # ears
  cv2.ellipse(img, p(0, 0.02), ax(0.35, 0.46), 0, 0, 360, shade, -1,
              cv2.LINE_AA)
  cv2.ellipse(img, p(0, 0.0), ax(0.3, 0.43), 0, 0, 360, layout['skin'], -1,
              cv2.LINE_AA)
  for side in (-1, 1):
    cv2.ellipse(img, p(side * 0.14, -0.08), ax(0.1, 0.06), 0, 0, 360, shade,
                -1, cv2.LINE_AA)                                      # socket
    eye_h = max(0.012, 0.035 * expr.eye_open)
    cv2.ellipse(img, p(side * 0.14, -0.08), ax(0.065, eye_h), 0, 0, 360,
                (225, 225, 230), -1, cv2.LINE_AA)
    cv2.circle(img, p(side * 0.14, -0.08), max(1, int(0.032 * s)),
               (30, 25, 20), -1, cv2.LINE_AA)
    inner_y = -0.19 - expr.brow_raise * 0.1 + expr.brow_tilt * 0.05
    outer_y = -0.19 - expr.brow_raise * 0.1 - expr.brow_tilt * 0.05
    cv2.line(img, p(side * 0.05, inner_y), p(side * 0.24, outer_y),
             layout['hair'], max(2, int(0.035 * s)), cv2.LINE_AA)
  cv2.line(img, p(0, -0.04), p(0, 0.08), tuple(np.minimum(skin * 1.12, 255)),
           max(2, int(0.04 * s)), cv2.LINE_AA)                        # bridge
  cv2.ellipse(img, p(0, 0.1), ax(0.07, 0.035), 0, 0, 360, shade, -1,
              cv2.LINE_AA)
  for side in (-1, 1):
    cv2.circle(img, p(side * 0.035, 0.105), max(1, int(0.014 * s)),
               (40, 40, 60), -1, cv2.LINE_AA)                         # nostrils
  _draw_mouth(img, p, s, expr)


def _draw_mouth(img, p, s, expr: Expression) -> None:
  xs = np.linspace(-0.17, 0.17, 17)
  curve = expr.mouth_curve * 0.09 * (1 - (xs / 0.17) ** 2)
  top = 0.24 - curve + expr.skew * 0.05 * xs / 0.17
  upper = np.array([p(x, y) for x, y in zip(xs, top)], np.int32)
  if expr.mouth_open > 0.1:
    bottom = top + expr.mouth_open * 0.12 * (1 - (xs / 0.17) ** 2)
    lower = np.array([p(x, y) for x, y in zip(xs[::-1], bottom[::-1])],
                     np.int32)
    cv2.fillPoly(img, [np.concatenate([upper, lower])], (40, 20, 90),
                 cv2.LINE_AA)
  cv2.polylines(img, [upper], False, (50, 40, 140), max(2, int(0.025 * s)),
                cv2.LINE_AA)


def render_frame(width: int, height: int, layout: dict, expr: Expression,
                 rng: np.random.Generator, noise: np.ndarray) -> np.ndarray:
  """One BGR frame: background, face with position jitter, noise."""
  img = np.empty((height, width, 3), np.uint8)
  img[:] = np.array(layout['bg'], np.uint8)
  draw_face(img, layout, expr, tuple(rng.normal(0, 2.0, 2)))
  img = cv2.GaussianBlur(img, (5, 5), 1.2)
  off = rng.integers(0, noise.shape[0] - height + 1)
  return cv2.add(img, noise[off:off + height, :width], dtype=cv2.CV_8U)


def _noise_texture(rng, width: int, height: int) -> np.ndarray:
  return rng.integers(0, 24, (height + 32, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------- voice


def voice(expressions: list[Expression], duration: float,
          rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
  """A float waveform in [-1, 1]: one harmonic voice per emotion, summed."""
  t = np.arange(int(round(duration * sr))) / sr
  out = np.zeros_like(t)
  shift = rng.uniform(0.92, 1.08)
  for expr in expressions:
    f0 = expr.pitch * shift * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t +
                                                 rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    rate = expr.rate * rng.uniform(0.9, 1.1)
    env = np.clip(np.sin(np.pi * rate * t + rng.uniform(0, np.pi)), 0, 1) ** 2
    out += tone * env / len(expressions)
  out = 0.25 * out + 0.01 * rng.standard_normal(t.size)
  return np.clip(out, -1, 1)


def _pcm16(x: np.ndarray) -> np.ndarray:
  return (np.clip(x, -1, 1) * 32767).astype(np.int16)


# -------------------------------------------------------------------- text


def sentence(names: list[str], rng: np.random.Generator) -> str:
  """Filler words with one or two emotion words per emotion."""
  words = [str(rng.choice(_WORDS[n])) for n in names]
  if len(words) == 1:
    words.append(str(rng.choice(_WORDS[names[0]])))
  template = str(rng.choice(_TEMPLATES))
  text = template.format(w=words[0], w2=words[1], t=str(rng.choice(_TOPICS)))
  if '{w2}' not in template and len(names) > 1:
    text += f' and {words[1]}'
  return text


# ------------------------------------------------------------------- MOSEI


def _mosei_labels(rng: np.random.Generator) -> list[int]:
  first = int(rng.integers(6))
  if rng.random() < 0.25:
    second = int(rng.choice([e for e in range(6) if e != first]))
    return sorted([first, second])
  return [first]


def _annotator_rows(video: str, clip: int, present: list[int],
                    rng: np.random.Generator) -> list[dict]:
  rows = []
  scores = np.zeros((3, 6), int)
  for e in present:
    scores[:, e] = rng.integers(0, 4, 3)
    scores[rng.integers(3), e] = rng.integers(1, 4)     # sum > 0
  for a in range(3):
    row = {'HITId': f'H{video}{clip}', 'WorkerId': f'W{a}',
           'Input.VIDEO_ID': video, 'Input.CLIP': str(clip),
           'Answer.sentiment': str(int(rng.integers(-3, 4)))}
    row.update({f'Answer.{n}': str(scores[a, i])
                for i, n in enumerate(EMOTIONS_MOSEI)})
    rows.append(row)
  return rows


def _write_video(path: Path, fourcc: str, width: int, height: int,
                 frames) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS,
                           (width, height))
  if not writer.isOpened():
    raise RuntimeError(f'OpenCV cannot write {fourcc} video {path}')
  for frame in frames:
    writer.write(frame)
  writer.release()


def _segment_expr(exprs: list[Expression], t: float) -> Expression:
  return exprs[int(t / SEGMENT_S) % len(exprs)]


def _mosei_video(root: Path, video: str, clips: list[dict],
                 rng: np.random.Generator, size: tuple[int, int]) -> None:
  width, height = size
  total = clips[-1]['end'] + 0.3
  noise = _noise_texture(rng, width, height)
  wave = 0.01 * rng.standard_normal(int(round(total * SAMPLE_RATE)))

  def frames():
    layout = _face_layout(rng, width, height)
    current, frame = None, None
    for i in range(int(round(total * FPS))):
      t = i / FPS
      clip = next((c for c in clips if c['start'] <= t < c['end']), None)
      if clip is not None and clip is not current:
        current, layout = clip, _face_layout(rng, width, height)
      names = clip['names'] if clip else ['neutral']
      expr = _segment_expr([_EXPR[n] for n in names],
                           t - (clip['start'] if clip else 0.0))
      if i % 3 == 0:                    # faces move at 10 Hz
        frame = render_frame(width, height, layout, expr, rng, noise)
      yield frame

  _write_video(root / 'Videos' / 'Full' / 'Combined' / f'{video}.mp4',
               'mp4v', width, height, frames())
  for c in clips:
    a, b = int(round(c['start'] * SAMPLE_RATE)), int(round(c['end'] *
                                                           SAMPLE_RATE))
    wave[a:b] += voice([_EXPR[n] for n in c['names']], c['end'] - c['start'],
                       rng)[:b - a]
  path = root / 'Audio' / 'WAV_16000' / f'{video}.wav'
  path.parent.mkdir(parents=True, exist_ok=True)
  wavfile.write(path, SAMPLE_RATE, _pcm16(wave))


def _write_splits(out_dir: Path, ids: list[str], rng: np.random.Generator,
                  fractions=(0.7, 0.15)) -> dict[str, list[str]]:
  ids = list(ids)
  rng.shuffle(ids)
  n_train = int(round(len(ids) * fractions[0]))
  n_valid = max(1, int(round(len(ids) * fractions[1])))
  splits = {'train': ids[:n_train], 'valid': ids[n_train:n_train + n_valid],
            'test': ids[n_train + n_valid:]}
  (out_dir / 'splits').mkdir(parents=True, exist_ok=True)
  for name, members in splits.items():
    (out_dir / 'splits' / f'{name}.txt').write_text(
        ''.join(f'{i}\n' for i in members))
  return splits


# How Input.VIDEO_ID names a video (write_mosei_raw's video_id_form).
_VIDEO_ID_FORMS = {
    'bare': '{}',
    'url': 'https://example.org/cmu-mosei/videos/{}.mp4?dl=1',
    'path': '/data/CMU_MOSEI/Videos/Full/Combined/{}.mp4',
}


def write_mosei_raw(out_dir: str | Path, num_clips: int = 240, seed: int = 0,
                    *, frame_size: tuple[int, int] = (320, 240),
                    clip_seconds: tuple[float, float] = (2.0, 4.0),
                    video_id_form: str = 'bare',
                    split_annotators: bool = False) -> dict:
  """Writes a CMU-MOSEI raw release of ``num_clips`` clips under ``out_dir``.

  ``video_id_form`` is how ``Input.VIDEO_ID`` names the video in the label
  CSVs: ``'bare'`` (the id), ``'url'`` (``https://.../<id>.mp4?...``) or
  ``'path'`` (``.../Combined/<id>.mp4``), forms the real MTurk files may hold.
  ``split_annotators`` spreads every clip's annotator rows over both CSVs
  (else the first half of all rows goes to ``batch_1.csv``).  Neither changes
  what else is written, nor the random draws.

  Returns (and writes to ``out_dir/ground_truth.json``) clip id -> {video,
  start, end, text, labels, emotions, split}.
  """
  if video_id_form not in _VIDEO_ID_FORMS:
    raise ValueError(f'video_id_form must be one of {tuple(_VIDEO_ID_FORMS)}'
                     f', got {video_id_form!r}')
  out_dir = Path(out_dir)
  rng = np.random.default_rng(seed)
  truth, rows, n = {}, [], 0
  while n < num_clips:
    video = f'-syn{len({v["video"] for v in truth.values()}):03d}_x'
    clips, t = [], 0.4
    for k in range(min(int(rng.integers(2, 5)), num_clips - n)):
      present = _mosei_labels(rng)
      dur = float(rng.uniform(*clip_seconds))
      names = [EMOTIONS_MOSEI[e] for e in present]
      clips.append({'clip': k, 'start': round(t, 3), 'end': round(t + dur, 3),
                    'names': names, 'text': sentence(names, rng)})
      rows.append(_annotator_rows(video, k, present, rng))
      t += dur + float(rng.uniform(0.2, 0.6))
    _mosei_video(out_dir, video, clips, rng, frame_size)
    lines = [f'{video}___{c["clip"]}___{c["start"]}___{c["end"]}___'
             f'{c["text"]}\n' for c in clips]
    tr = out_dir / 'Transcript' / 'Combined' / f'{video}.txt'
    tr.parent.mkdir(parents=True, exist_ok=True)
    tr.write_text(''.join(lines))
    for c in clips:
      labels = [float(e in c['names']) for e in EMOTIONS_MOSEI]
      truth[f'{video}_{c["clip"]}'] = {
          'video': video, 'start': c['start'], 'end': c['end'],
          'text': c['text'], 'labels': labels, 'emotions': c['names']}
    n += len(clips)
  for clip_rows in rows:
    for row in clip_rows:
      row['Input.VIDEO_ID'] = _VIDEO_ID_FORMS[video_id_form].format(
          row['Input.VIDEO_ID'])
  _write_label_csvs(out_dir, rows, split_annotators)
  return _finish_truth(out_dir, truth, rng)


def _write_label_csvs(out_dir: Path, rows: list[list[dict]],
                      split_annotators: bool = False) -> None:
  """``batch_1.csv`` and ``batch_2.csv`` from the annotator rows of each clip.

  By default the first half of all rows goes to batch 1.  With
  ``split_annotators`` every clip with two or more rows has rows in both files
  (its annotators alternate between them, starting in turn with each file).
  """
  (out_dir / 'Labels').mkdir(parents=True, exist_ok=True)
  if split_annotators:
    parts = ([], [])
    for k, clip_rows in enumerate(rows):
      for a, row in enumerate(clip_rows):
        parts[(a + k) % 2].append(row)
  else:
    flat = [row for clip_rows in rows for row in clip_rows]
    parts = (flat[:len(flat) // 2], flat[len(flat) // 2:])
  for name, part in zip(('batch_1.csv', 'batch_2.csv'), parts):
    with open(out_dir / 'Labels' / name, 'w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0][0]))
      writer.writeheader()
      writer.writerows(part)


def _finish_truth(out_dir: Path, truth: dict, rng,
                  split_ids: list[str] | None = None) -> dict:
  """Split files over ``split_ids`` (default: every clip), ground_truth.json."""
  splits = _write_splits(out_dir, list(truth) if split_ids is None
                         else split_ids, rng)
  for name, members in splits.items():
    for clip_id in members:
      truth[clip_id]['split'] = name
  (out_dir / 'ground_truth.json').write_text(json.dumps(truth, indent=0))
  return truth


# ----------------------------------------------------------------- IEMOCAP


def _iemocap_expr(code: str) -> Expression:
  """Face / voice of an IEMOCAP code ('xxx', no agreement: neutral)."""
  return _EXPR[_IEMOCAP_EXPR.get(code, 'neutral')]


def _iemocap_dialog_name(index: int) -> tuple[int, str]:
  session = index % 5 + 1
  letter = 'FM'[(index // 5) % 2]
  kind = (f'impro{index // 10 + 1:02d}' if index % 3 else
          f'script{index // 10 + 1:02d}_{index % 2 + 1}')
  return session, f'Ses{session:02d}{letter}_{kind}'


def _iemocap_dialog(root: Path, session: int, dialog: str,
                    utts: list[dict], rng: np.random.Generator,
                    half: int) -> None:
  base = root / f'Session{session}' / 'dialog'
  total = utts[-1]['end'] + 0.3
  width, height = 2 * half, half
  noise = _noise_texture(rng, width, height)
  layouts = {s: _face_layout(rng, half, half) for s in ('left', 'right')}
  listener = {s: _EXPR['neutral'] for s in ('left', 'right')}

  def frames():
    frame = None
    for i in range(int(round(total * FPS))):
      t = i / FPS
      u = next((u for u in utts if u['start'] <= t < u['end']), None)
      if i % 3 == 0:
        parts = []
        for s in ('left', 'right'):
          expr = (_iemocap_expr(u['code']) if u and u['side'] == s
                  else (u['listener'] if u else listener[s]))
          parts.append(render_frame(half, half, layouts[s], expr, rng,
                                    noise[:, :half]))
        frame = np.concatenate(parts, axis=1)
      yield frame

  _write_video(base / 'avi' / 'DivX' / f'{dialog}.avi', 'XVID', width, height,
               frames())
  wave = 0.005 * rng.standard_normal((int(round(total * SAMPLE_RATE)), 2))
  for u in utts:
    a = int(round(u['start'] * SAMPLE_RATE))
    v = voice([_iemocap_expr(u['code'])], u['end'] - u['start'], rng)
    b = min(a + v.size, wave.shape[0])
    ch = 0 if u['side'] == 'left' else 1
    wave[a:b, ch] += v[:b - a]
    wave[a:b, 1 - ch] += 0.1 * v[:b - a]          # crosstalk
  (base / 'wav').mkdir(parents=True, exist_ok=True)
  wavfile.write(base / 'wav' / f'{dialog}.wav', SAMPLE_RATE, _pcm16(wave))
  _iemocap_text_files(base, dialog, utts)


def _iemocap_text_files(base: Path, dialog: str, utts: list[dict]) -> None:
  trans = [f'{u["id"]} [{u["start"]:08.4f}-{u["end"]:08.4f}]: {u["text"]}\n'
           for u in utts]
  emo = ['% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n', '\n']
  for u in utts:
    emo += [f'[{u["start"]:.4f} - {u["end"]:.4f}]\t{u["id"]}\t{u["code"]}\t'
            '[2.5000, 2.5000, 2.5000]\n',
            f'C-E1:\t{u["code"]};\t()\n', 'A-E1:\tval 3; act 3; dom  3;\t()\n',
            '\n']
  for sub, lines in (('transcriptions', trans), ('EmoEvaluation', emo)):
    (base / sub).mkdir(parents=True, exist_ok=True)
    (base / sub / f'{dialog}.txt').write_text(''.join(lines))


def write_iemocap_raw(out_dir: str | Path, num_dialogs: int = 6,
                      seed: int = 0, *, utterances_per_dialog: int = 8,
                      half_size: int = 160,
                      clip_seconds: tuple[float, float] = (2.0, 4.0)) -> dict:
  """Writes an IEMOCAP full release (``Session<n>/dialog/...``) under out_dir.

  Returns (and writes to ``out_dir/ground_truth.json``) utterance id ->
  {dialog, start, end, text, labels, code, side, split}.  About one utterance
  in 20 gets the code 'xxx' (no agreement) and stays out of the split files.
  """
  out_dir = Path(out_dir)
  rng = np.random.default_rng(seed)
  truth = {}
  for d in range(num_dialogs):
    session, dialog = _iemocap_dialog_name(d)
    counters, utts, t = {'F': 0, 'M': 0}, [], 0.3
    for _ in range(utterances_per_dialog):
      spk = str(rng.choice(['F', 'M']))
      uid = f'{dialog}_{spk}{counters[spk]:03d}'
      counters[spk] += 1
      code = ('xxx' if rng.random() < 0.05 else
              str(rng.choice(EMOTIONS_IEMOCAP)))
      name = _IEMOCAP_EXPR.get(code, 'neutral')
      text = sentence([name], rng)
      if rng.random() < 0.1:
        text = f'hmm: {text}'                 # a colon inside the words
      dur = float(rng.uniform(*clip_seconds))
      side = 'left' if dialog.split('_')[0][-1] == spk else 'right'
      utts.append({'id': uid, 'start': round(t, 4), 'end': round(t + dur, 4),
                   'code': code, 'text': text, 'side': side,
                   'listener': _EXPR[str(rng.choice(list(_EXPR)))]})
      t += dur + float(rng.uniform(0.2, 0.6))
    _iemocap_dialog(out_dir, session, dialog, utts, rng, half_size)
    for u in utts:
      one_hot = [float(u['code'] == c) for c in EMOTIONS_IEMOCAP]
      truth[u['id']] = {'dialog': dialog, 'start': u['start'],
                        'end': u['end'], 'text': u['text'], 'labels': one_hot,
                        'code': u['code'], 'side': u['side']}
  usable = [k for k, v in truth.items() if v['code'] != 'xxx']
  return _finish_truth(out_dir, truth, rng, usable)


# ---------------------------------------------------------------- manifest


# Expressions of label names that are not in _EXPR (by meaning); any other
# name gets the next expression not yet taken, in _EXPR order.
_SYNONYMS = {'calm': 'neutral', 'joy': 'happiness', 'happy': 'happiness',
             'angry': 'anger', 'sad': 'sadness', 'sadness': 'sadness',
             'surprised': 'surprise', 'afraid': 'fear', 'scared': 'fear',
             'disgusted': 'disgust', 'excitement': 'excited',
             'frustration': 'frustrated'}
_IEMOCAP_NAMES = dict(zip(EMOTIONS_IEMOCAP, _IEMOCAP_EXPR.values()))
MANIFEST_VIDEO_RATE = 44100   # the mp4s' audio tracks (resampled to 16 kHz)
MANIFEST_WAV_RATE = 44100     # the one clip with a separate (stereo) wav


def manifest_expressions(labels) -> dict[str, str]:
  """Label name -> the _EXPR emotion that draws / voices / words it."""
  out: dict[str, str] = {}
  for name in labels:
    key = name.lower()
    expr = (key if key in _EXPR else _SYNONYMS.get(key) or
            _IEMOCAP_NAMES.get(key))
    if expr is None or expr in out.values():
      expr = next((e for e in _EXPR if e not in out.values()), None)
    if expr is None:
      raise ValueError(f'at most {len(_EXPR)} labels, got {len(labels)}')
    out[name] = expr
  return out


def write_av_mp4(path: str | Path, frames, size: tuple[int, int],
                 wave: np.ndarray | None = None, sr: int = 0) -> None:
  """An mp4 ('mpeg4' video, FPS) with a mono AAC track of ``wave`` (if any).

  ``frames`` are BGR uint8 [height, width, 3], ``size`` is (width, height),
  ``wave`` a float waveform in [-1, 1] at ``sr`` Hz.

  PyAV (the FFmpeg in its wheel) muxes both streams; OpenCV, which writes
  the other synthetic videos, cannot write audio.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), 'w') as container:
    vs = container.add_stream('mpeg4', rate=FPS)
    vs.width, vs.height = size
    vs.pix_fmt = 'yuv420p'
    vs.bit_rate = 400_000
    aus = None
    if wave is not None:
      aus = container.add_stream('aac', rate=sr, layout='mono')
      aus.bit_rate = 96_000
    for frame in frames:
      vf = av.VideoFrame.from_ndarray(frame, format='bgr24')
      container.mux(vs.encode(vf))
    container.mux(vs.encode(None))
    if aus is not None:
      pcm = np.asarray(wave, np.float32)[None, :]
      step = 1024
      for i in range(0, pcm.shape[1], step):
        af = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm[:, i:i + step]), format='fltp',
            layout='mono')
        af.sample_rate, af.pts = sr, i
        container.mux(aus.encode(af))
      container.mux(aus.encode(None))


def _manifest_names(labels, multi_label: bool,
                    rng: np.random.Generator, index: int) -> list[str]:
  """The label names of clip ``index`` (round robin, so every one occurs)."""
  first = labels[index % len(labels)]
  if multi_label and len(labels) > 1 and rng.random() < 0.25:
    second = str(rng.choice([n for n in labels if n != first]))
    return sorted([first, second], key=labels.index)
  return [first]


def _manifest_splits(n: int, rng: np.random.Generator) -> list[str]:
  """A split per clip: 70 / 15 / 15 %, at least one clip in each."""
  if n < 3:
    raise ValueError(f'need at least 3 clips (one per split), got {n}')
  n_valid = n_test = max(1, int(round(0.15 * n)))
  splits = (['train'] * (n - n_valid - n_test) + ['valid'] * n_valid +
            ['test'] * n_test)
  rng.shuffle(splits)
  return splits


def write_manifest(out_dir: str | Path, num_clips: int = 12, seed: int = 0,
                   labels=('calm', 'joy', 'anger'), multi_label: bool = False,
                   *, frame_size: tuple[int, int] = (96, 96),
                   clip_seconds: tuple[float, float] = (1.0, 2.0),
                   wav_clip: bool = True, fmt: str = 'csv') -> Path:
  """Writes clips and a manifest listing them (``data_pipelines.readers
  .manifest``) under ``out_dir``; returns the manifest's path.

  Each clip is its own small mp4 (``videos/<id>.mp4``, ``frame_size`` px,
  30 fps) with a 44.1 kHz mono AAC audio track; the face, voice and words
  follow the clip's label(s) as in ``write_mosei_raw``.  Every other clip
  lies inside a longer video (neutral, quiet margins) and has start / end;
  the others have none (the whole file).  With ``wav_clip`` the first train
  clip's video has no audio track and its audio is a 44.1 kHz stereo wav
  (``audio/<id>.wav``) named in the audio column.  Paths are relative.

  Args:
    out_dir: where to write (created).
    num_clips: clips (>= 3: one per split; 70 / 15 / 15 % otherwise).
    seed: random seed.
    labels: the label names (at most 9); each occurs at least once when
      ``num_clips >= len(labels)``.
    multi_label: ``label:<name>`` score columns (a clip has one or two
      emotions, scores 0..3, some negative) instead of one ``label`` column.
    frame_size: (width, height) of the videos.
    clip_seconds: range of a clip's duration.
    wav_clip: give one clip a separate 44.1 kHz stereo wav.
    fmt: 'csv' (``manifest.csv``) or 'jsonl' (``manifest.jsonl``).

  Also writes ``ground_truth.json``: clip id -> {labels (vector in label-name
  order), emotions, split, text, start, end}.
  """
  if fmt not in ('csv', 'jsonl'):
    raise ValueError(f"fmt must be 'csv' or 'jsonl', got {fmt!r}")
  labels = tuple(labels)
  exprs = manifest_expressions(labels)
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  width, height = frame_size
  splits = _manifest_splits(num_clips, rng)
  order = rng.permutation(num_clips)              # which clip gets which label
  wav_index = splits.index('train') if wav_clip else -1
  rows, truth = [], {}
  for i in range(num_clips):
    clip_id = f'clip{i:03d}'
    names = _manifest_names(labels, multi_label, rng, int(order[i]))
    dur = round(float(rng.uniform(*clip_seconds)), 3)
    margin = 0.4 if i % 2 else 0.0                # inside a longer video
    start, end = (round(margin, 3), round(margin + dur, 3)) if margin else (
        None, None)
    total = dur + 2 * margin
    clip_exprs = [_EXPR[exprs[n]] for n in names]
    text = sentence([exprs[n] for n in names], rng)
    noise = _noise_texture(rng, width, height)

    def frames(clip_exprs=clip_exprs, margin=margin, total=total,
               noise=noise):
      layout = _face_layout(rng, width, height)
      frame = None
      for k in range(int(round(total * FPS))):
        t = k / FPS
        inside = margin <= t < total - margin
        expr = (_segment_expr(clip_exprs, t - margin) if inside
                else _EXPR['neutral'])
        if k % 3 == 0:
          frame = render_frame(width, height, layout, expr, rng, noise)
        yield frame

    def track(sr: int, channels: int = 1) -> np.ndarray:
      n = int(round(total * sr))
      wave = 0.01 * rng.standard_normal((n, channels))
      a = int(round(margin * sr))
      v = voice(clip_exprs, dur, rng, sr)[:n - a]
      wave[a:a + v.size] += v[:, None] * (1.0 if channels == 1 else
                                          np.array([1.0, 0.6]))
      return np.clip(wave, -1, 1)

    video_rel = f'videos/{clip_id}.mp4'
    audio_rel = ''
    if i == wav_index:
      audio_rel = f'audio/{clip_id}.wav'
      (out_dir / 'audio').mkdir(parents=True, exist_ok=True)
      wavfile.write(out_dir / audio_rel, MANIFEST_WAV_RATE,
                    _pcm16(track(MANIFEST_WAV_RATE, 2)))
      write_av_mp4(out_dir / video_rel, frames(), frame_size, None, 0)
    else:
      write_av_mp4(out_dir / video_rel, frames(), frame_size,
                      track(MANIFEST_VIDEO_RATE)[:, 0], MANIFEST_VIDEO_RATE)
    row = {'clip_id': clip_id, 'video': video_rel, 'audio': audio_rel,
           'start': '' if start is None else start,
           'end': '' if end is None else end, 'text': text,
           'split': splits[i]}
    if multi_label:
      for n in labels:                    # absent: 0 or a negative score
        row[f'label:{n}'] = (int(rng.integers(1, 4)) if n in names else
                             int(rng.choice([0, 0, -1])))
    else:
      row['label'] = names[0]
    rows.append(row)
    truth[clip_id] = {'labels': [float(n in names) for n in labels],
                      'emotions': names, 'split': splits[i], 'text': text,
                      'start': start, 'end': end, 'audio': audio_rel}
  path = out_dir / f'manifest.{fmt}'
  if fmt == 'csv':
    with open(path, 'w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)
  else:
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  (out_dir / 'ground_truth.json').write_text(json.dumps(truth, indent=0))
  return path


def main(argv: list[str] | None = None) -> None:
  """Command line: write a synthetic raw release or manifest."""
  p = argparse.ArgumentParser(prog='python -m data_pipelines.synthetic',
                              description=__doc__.split('\n')[0])
  p.add_argument('--dataset', required=True,
                 choices=('mosei', 'iemocap', 'manifest'))
  p.add_argument('--out_dir', required=True)
  p.add_argument('--num_clips', type=int, default=240,
                 help='MOSEI clips, or manifest clips')
  p.add_argument('--num_dialogs', type=int, default=6, help='IEMOCAP')
  p.add_argument('--multi_label', action='store_true',
                 help="manifest: 'label:<name>' columns, several per clip")
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args(argv)
  if args.dataset == 'manifest':
    path = write_manifest(args.out_dir, args.num_clips, args.seed,
                          multi_label=args.multi_label)
    print(f'wrote {path}')
    return
  if args.dataset == 'mosei':
    truth = write_mosei_raw(args.out_dir, args.num_clips, args.seed)
  else:
    truth = write_iemocap_raw(args.out_dir, args.num_dialogs, args.seed)
  print(f'wrote {len(truth)} clips to {args.out_dir} (splits in '
        f'{Path(args.out_dir) / "splits"})')


if __name__ == '__main__':
  main()
