"""CMU-MOSEI reader: the raw release and the authors' processed folders.

Raw release (MESM.md): ``Audio/WAV_16000/<video>.wav``,
``Videos/Full/Combined/<video>.mp4``, ``Transcript/Combined/<video>.txt``
(``video___clip___start___end___text`` per line) and ``Labels/*.csv`` (one row
per annotator: ``Input.VIDEO_ID``, ``Input.CLIP``, ``Answer.<emotion>``).  A
clip id is ``<video>_<clip>``; an emotion is present when the sum of its
annotator scores is above 0.

Processed layout: ``MOSEI_RAW_PROCESSED/<clip id>/image_<i>.jpg`` +
``audio.wav``, and ``meta.pkl`` mapping clip id -> {text, label}.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from absl import logging
import numpy as np

from data_pipelines.readers import common
from data_pipelines.readers.common import Clip, Skip

EMOTIONS = ('anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise')
LABEL_COLUMNS = tuple(f'Answer.{e}' for e in EMOTIONS)
PROCESSED_DIR = 'MOSEI_RAW_PROCESSED'


def detect_layout(raw_dir: str | Path) -> tuple[str, Path]:
  """('raw' | 'processed', root) of a MOSEI directory."""
  raw_dir = Path(raw_dir)
  processed = common.find_processed(raw_dir, PROCESSED_DIR)
  if processed is not None:
    return 'processed', processed
  for cand in (raw_dir, raw_dir / 'Raw', raw_dir / 'CMU_MOSEI'):
    if (cand / 'Transcript').is_dir() or (cand / 'Labels').is_dir():
      return 'raw', cand
  raise FileNotFoundError(
      f'{raw_dir}: neither a CMU-MOSEI raw release (Transcript/, Labels/, '
      f'Audio/, Videos/) nor the processed {PROCESSED_DIR}/ with meta.pkl')


def parse_transcript_line(line: str) -> tuple[str, str, float, float, str]:
  """``video___clip___start___end___text`` -> fields (ValueError if bad)."""
  parts = line.rstrip('\n').split('___', 4)
  if len(parts) != 5:
    raise ValueError(f'expected 5 ___-separated fields, got {len(parts)}')
  video, clip, start, end, text = parts
  return video.strip(), clip.strip(), float(start), float(end), text.strip()


def read_transcripts(root: Path) -> tuple[dict, list[Skip]]:
  """clip id -> (video, start, end, text, file) over all transcript files."""
  found, bad = {}, []
  for path in sorted((root / 'Transcript' / 'Combined').glob('*.txt')):
    with open(path, encoding='utf-8', errors='replace') as f:
      for n, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          video, clip, start, end, text = parse_transcript_line(line)
        except ValueError as e:
          bad.append(Skip('', 'bad_transcript_line', str(path),
                          f'line {n}: {e}'))
          continue
        found.setdefault(f'{video}_{clip}', (video, start, end, text,
                                             str(path)))
  return found, bad


def _score(value: str) -> float:
  x = float(value)
  if not math.isfinite(x):
    raise ValueError(value)
  return x


def read_labels(root: Path) -> dict[str, tuple[np.ndarray | None, str]]:
  """clip id -> (annotator sums [6] or None if a score is unreadable, file)."""
  sums: dict[str, tuple[np.ndarray | None, str]] = {}
  for path in sorted((root / 'Labels').glob('*.csv')):
    with open(path, newline='', encoding='utf-8', errors='replace') as f:
      rows = csv.DictReader(f)
      cols = rows.fieldnames or []
      if 'Input.VIDEO_ID' not in cols or 'Input.CLIP' not in cols:
        continue
      for row in rows:
        clip_id = f"{row['Input.VIDEO_ID'].strip()}_{row['Input.CLIP'].strip()}"
        prev, _ = sums.get(clip_id, (np.zeros(6), str(path)))
        try:
          scores = np.array([_score(row.get(c) or '') for c in LABEL_COLUMNS])
        except ValueError:
          sums[clip_id] = (None, str(path))
          continue
        sums[clip_id] = (None if prev is None else prev + scores, str(path))
  return sums


def labels_from_sums(sums: np.ndarray) -> np.ndarray:
  """MOSEI rule: an emotion is present when its annotator sum is above 0."""
  return (np.asarray(sums) > 0).astype(np.float32)


def read_raw(root: Path, ids: list[str]) -> common.SplitClips:
  transcripts, bad = read_transcripts(root)
  if bad:
    logging.warning('%d unreadable transcript lines ignored, first: %s %s',
                    len(bad), bad[0].file, bad[0].detail)
  labels = read_labels(root)
  found: dict[str, Clip | Skip] = {}
  for clip_id in ids:
    tr, lab = transcripts.get(clip_id), labels.get(clip_id)
    if tr is None and lab is None:
      continue
    if tr is None:
      found[clip_id] = Skip(clip_id, 'no_transcript', lab[1])
      continue
    video, start, end, text, tr_file = tr
    if lab is None:
      found[clip_id] = Skip(clip_id, 'no_label', str(root / 'Labels'))
    elif lab[0] is None:
      found[clip_id] = Skip(clip_id, 'unknown_label', lab[1])
    elif not text:
      found[clip_id] = Skip(clip_id, 'empty_transcript', tr_file)
    elif not end > start:
      found[clip_id] = Skip(clip_id, 'bad_boundaries', tr_file,
                            f'start {start} >= end {end}')
    else:
      found[clip_id] = Clip(
          clip_id, 'mosei', 'raw', text, labels_from_sums(lab[0]),
          audio_path=str(root / 'Audio' / 'WAV_16000' / f'{video}.wav'),
          video_path=str(root / 'Videos' / 'Full' / 'Combined' /
                         f'{video}.mp4'),
          start=start, end=end)
  return common.assemble(ids, found, 'raw', root)


def read_processed(root: Path, ids: list[str]) -> common.SplitClips:
  meta = common.load_meta(root)
  found: dict[str, Clip | Skip] = {}
  for clip_id in ids:
    folder = root / clip_id
    if clip_id not in meta and not folder.is_dir():
      continue
    if clip_id not in meta:
      found[clip_id] = Skip(clip_id, 'no_label', str(root / 'meta.pkl'))
      continue
    text, label = common.meta_entry(meta, clip_id)
    labels = common.processed_labels(label, EMOTIONS)
    if labels is None:
      found[clip_id] = Skip(clip_id, 'unknown_label', str(root / 'meta.pkl'),
                            repr(label)[:80])
    elif not isinstance(text, str) or not text.strip():
      found[clip_id] = Skip(clip_id, 'empty_transcript',
                            str(root / 'meta.pkl'))
    else:
      found[clip_id] = Clip(
          clip_id, 'mosei', 'processed', text.strip(), labels,
          audio_path=str(folder / 'audio.wav'),
          image_paths=common.processed_images(folder, 'image_'))
  return common.assemble(ids, found, 'processed', root)


def read(raw_dir: str | Path, ids: list[str]) -> common.SplitClips:
  """The clips of ``ids`` found under ``raw_dir`` (either layout)."""
  layout, root = detect_layout(raw_dir)
  return (read_raw if layout == 'raw' else read_processed)(root, ids)
