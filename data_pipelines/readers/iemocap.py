"""IEMOCAP reader: the full release and the authors' processed folders.

Full release (MESM.md): ``Session<n>/dialog/avi/DivX/<dialog>.avi`` (two
speakers side by side), ``Session<n>/dialog/wav/<dialog>.wav`` (stereo),
``dialog/transcriptions/<dialog>.txt`` (``<utterance id> [start-end]: text``)
and ``dialog/EmoEvaluation/<dialog>.txt`` (``[start - end]<TAB>id<TAB>label``).

Speaker side: the left half of the video and the left audio channel (0) when
the session letter (last character of the first id field, ``Ses01F`` -> F)
equals the speaker letter (first character of the last id field, ``F012`` ->
F), otherwise the right half and channel 1.

Text (quirk 6): the original keeps the text after the LAST colon of a
transcription line, so a colon inside the words cuts them.  That is the
default (``text_rule='last_colon'``, faithful); ``text_rule='full'`` keeps
everything after the ``[start-end]:`` prefix.

Processed layout: ``IEMOCAP_RAW_PROCESSED/<Session_dialog>/<utterance id>/``
with ``image_L_<i>.jpg``, ``image_R_<i>.jpg``, ``audio_L.wav``,
``audio_R.wav``, and ``meta.pkl`` mapping utterance id -> {text, label}.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from data_pipelines.readers import common
from data_pipelines.readers.common import Clip, Skip

EMOTIONS = ('ang', 'exc', 'fru', 'hap', 'neu', 'sad')
EMOTION_NAMES = ('anger', 'excited', 'frustrated', 'happy', 'neutral', 'sad')
PROCESSED_DIR = 'IEMOCAP_RAW_PROCESSED'
TEXT_RULES = ('last_colon', 'full')

_EMO_LINE = re.compile(
    r'^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)')
_TRANS_LINE = re.compile(r'^(\S+)\s+\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s*:(.*)$')


def speaker_side(utterance_id: str) -> str:
  """'left' when the session letter equals the speaker letter, else 'right'."""
  fields = utterance_id.split('_')
  if len(fields) < 3 or not fields[0] or not fields[-1]:
    raise ValueError(f'not an IEMOCAP utterance id: {utterance_id!r}')
  return 'left' if fields[0][-1] == fields[-1][0] else 'right'


def dialog_of(utterance_id: str) -> str:
  """``Ses01F_script01_1_F024`` -> ``Ses01F_script01_1``."""
  return utterance_id.rsplit('_', 1)[0]


def session_of(utterance_id: str) -> str:
  """``Ses01F_...`` -> ``Session1``."""
  digits = re.match(r'Ses(\d+)', utterance_id)
  if not digits:
    raise ValueError(f'not an IEMOCAP utterance id: {utterance_id!r}')
  return f'Session{int(digits.group(1))}'


def one_hot(code: str) -> np.ndarray | None:
  """One-hot [6] of an IEMOCAP code, None for the other codes (xxx, oth...)."""
  if code not in EMOTIONS:
    return None
  out = np.zeros(len(EMOTIONS), np.float32)
  out[EMOTIONS.index(code)] = 1.0
  return out


def transcript_text(line: str, rule: str = 'last_colon') -> str:
  """The words of a transcription line under ``rule`` (see module doc)."""
  if rule == 'last_colon':
    return line.rsplit(':', 1)[-1].strip()
  if rule == 'full':
    m = _TRANS_LINE.match(line.strip())
    return m.group(4).strip() if m else line.split(':', 1)[-1].strip()
  raise ValueError(f'text_rule must be one of {TEXT_RULES}, got {rule!r}')


def detect_layout(raw_dir: str | Path) -> tuple[str, Path]:
  """('raw' | 'processed', root) of an IEMOCAP directory."""
  raw_dir = Path(raw_dir)
  processed = common.find_processed(raw_dir, PROCESSED_DIR)
  if processed is not None:
    return 'processed', processed
  for cand in (raw_dir, raw_dir / 'IEMOCAP_full_release'):
    if any(cand.glob('Session[0-9]*/dialog')):
      return 'raw', cand
  raise FileNotFoundError(
      f'{raw_dir}: neither the IEMOCAP full release (Session<n>/dialog/...) '
      f'nor the processed {PROCESSED_DIR}/ with meta.pkl')


def read_emo_evaluation(path: Path) -> dict[str, tuple[float, float, str]]:
  """utterance id -> (start, end, label code) of one EmoEvaluation file."""
  out = {}
  with open(path, encoding='utf-8', errors='replace') as f:
    for line in f:
      m = _EMO_LINE.match(line.strip())
      if m:
        out[m.group(3)] = (float(m.group(1)), float(m.group(2)), m.group(4))
  return out


def read_transcription(path: Path, rule: str) -> dict[str, str]:
  """utterance id -> text of one transcription file."""
  out = {}
  with open(path, encoding='utf-8', errors='replace') as f:
    for line in f:
      m = _TRANS_LINE.match(line.strip())
      if m:
        out[m.group(1)] = transcript_text(line, rule)
  return out


def _dialog_files(root: Path, dialog: str) -> dict[str, Path]:
  base = root / session_of(dialog) / 'dialog'
  return {'emo': base / 'EmoEvaluation' / f'{dialog}.txt',
          'text': base / 'transcriptions' / f'{dialog}.txt',
          'wav': base / 'wav' / f'{dialog}.wav',
          'avi': base / 'avi' / 'DivX' / f'{dialog}.avi'}


def _raw_clip(root: Path, uid: str, emo: dict, texts: dict,
              files: dict[str, Path]) -> Clip | Skip | None:
  if uid not in emo and uid not in texts:
    return None
  if uid not in emo:
    return Skip(uid, 'no_label', str(files['emo']),
                f'{uid} has a transcript line but no [start - end] line in '
                f'{files["emo"].name}')
  start, end, code = emo[uid]
  labels = one_hot(code)
  if labels is None:
    return Skip(uid, 'unknown_label', str(files['emo']),
                f'code {code!r} is not one of the 6 classes '
                f'({", ".join(EMOTIONS)})')
  text = texts.get(uid, '')
  if not text:
    return Skip(uid, 'empty_transcript', str(files['text']))
  if not end > start:
    return Skip(uid, 'bad_boundaries', str(files['emo']),
                f'start {start} >= end {end}')
  side = speaker_side(uid)
  return Clip(uid, 'iemocap', 'raw', text, labels,
              audio_path=str(files['wav']), video_path=str(files['avi']),
              start=start, end=end, side=side,
              channel=0 if side == 'left' else 1)


def read_raw(root: Path, ids: list[str],
             text_rule: str = 'last_colon') -> common.SplitClips:
  cache: dict[str, tuple[dict, dict, dict]] = {}
  found: dict[str, Clip | Skip] = {}
  for uid in ids:
    try:
      dialog = dialog_of(uid)
      files = _dialog_files(root, dialog)
    except ValueError:
      continue
    if dialog not in cache:
      emo = (read_emo_evaluation(files['emo']) if files['emo'].is_file()
             else {})
      texts = (read_transcription(files['text'], text_rule)
               if files['text'].is_file() else {})
      cache[dialog] = (emo, texts, files)
    item = _raw_clip(root, uid, *cache[dialog])
    if item is not None:
      found[uid] = item
  return common.assemble(ids, found, 'raw', root)


def _processed_folders(root: Path) -> dict[str, Path]:
  """utterance id -> its folder (``<root>/<Session_dialog>/<id>/``)."""
  return {p.name: p for p in root.glob('*/*') if p.is_dir()}


def read_processed(root: Path, ids: list[str],
                   text_rule: str = 'last_colon') -> common.SplitClips:
  del text_rule  # the authors' meta.pkl holds the text already cut
  meta = common.load_meta(root)
  folders = _processed_folders(root)
  found: dict[str, Clip | Skip] = {}
  for uid in ids:
    if uid not in meta and uid not in folders:
      continue
    if uid not in meta:
      found[uid] = Skip(uid, 'no_label', str(root / 'meta.pkl'),
                        f'folder {uid} is there but {uid} is not a key of '
                        'meta.pkl')
      continue
    if uid not in folders:
      found[uid] = Skip(uid, 'missing_files', str(root / '*' / uid))
      continue
    text, label = common.meta_entry(meta, uid)
    labels = common.processed_labels(label, EMOTIONS)
    side = speaker_side(uid)
    s = 'L' if side == 'left' else 'R'
    if labels is None:
      found[uid] = Skip(uid, 'unknown_label', str(root / 'meta.pkl'),
                        repr(label)[:80])
    elif not isinstance(text, str) or not text.strip():
      found[uid] = Skip(uid, 'empty_transcript', str(root / 'meta.pkl'))
    else:
      folder = folders[uid]
      found[uid] = Clip(
          uid, 'iemocap', 'processed', text.strip(), labels,
          audio_path=str(folder / f'audio_{s}.wav'),
          image_paths=common.processed_images(folder, f'image_{s}_'),
          side=side)
  return common.assemble(ids, found, 'processed', root)


def read(raw_dir: str | Path, ids: list[str],
         text_rule: str = 'last_colon') -> common.SplitClips:
  """The utterances of ``ids`` found under ``raw_dir`` (either layout)."""
  if text_rule not in TEXT_RULES:
    raise ValueError(f'text_rule must be one of {TEXT_RULES}, got '
                     f'{text_rule!r}')
  layout, root = detect_layout(raw_dir)
  fn = read_raw if layout == 'raw' else read_processed
  return fn(root, ids, text_rule=text_rule)
