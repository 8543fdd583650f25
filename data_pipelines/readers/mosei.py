"""CMU-MOSEI reader: the raw release and the authors' processed folders.

Raw release (MESM.md): ``Audio/WAV_16000/<video>.wav``,
``Videos/Full/Combined/<video>.mp4``, ``Transcript/Combined/<video>.txt``
(``video___clip___start___end___text`` per line) and ``Labels/*.csv`` (one row
per annotator: ``Input.VIDEO_ID``, ``Input.CLIP``, ``Answer.<emotion>``).  A
clip id is ``<video>_<clip>``, the video id being the last ``/`` component of
``Input.VIDEO_ID`` (which may be a URL or a path); an emotion is present when
the sum of its annotators' scores, over the rows of all the CSVs, is above 0.

Processed layout: ``MOSEI_RAW_PROCESSED/<clip id>/image_<i>.jpg`` +
``audio.wav``, and ``meta.pkl`` mapping clip id -> {text, label}.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path

from absl import logging
import numpy as np

from data_pipelines.readers import common
from data_pipelines.readers.common import Clip, Skip

EMOTIONS = ('anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise')
LABEL_COLUMNS = tuple(f'Answer.{e}' for e in EMOTIONS)
ID_COLUMNS = ('Input.VIDEO_ID', 'Input.CLIP')
VIDEO_SUFFIXES = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.flv',
                  '.wmv', '.mpg', '.mpeg', '.3gp')
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


def video_id(value: str) -> str:
  """The video id in an ``Input.VIDEO_ID`` cell or a transcript's first field.

  The MTurk label CSVs may hold a URL or a path instead of a bare id; like the
  authors' preprocessing (``str(VIDEO_ID).split('/')[-1]``) the id is the last
  ``/`` component.  A ``?query`` or ``#fragment``, a trailing ``/`` and one
  video file extension (``.mp4`` ...) are dropped too: YouTube ids, which
  MOSEI's are, never contain those characters.
  """
  s = value.strip().split('#', 1)[0].split('?', 1)[0].rstrip('/\\')
  s = re.split(r'[/\\]', s)[-1]
  stem, dot, ext = s.rpartition('.')
  if dot and stem and f'.{ext.lower()}' in VIDEO_SUFFIXES:
    return stem
  return s


def clip_number(value: str) -> str:
  """The clip number of an ``Input.CLIP`` cell or a transcript's 2nd field.

  ``' 5 '`` and ``'5.0'`` (what a spreadsheet may write) both give ``'5'``, so
  label rows and transcript lines of one clip meet under one id.
  """
  s = value.strip()
  whole = re.fullmatch(r'(\d+)\.0*', s)
  return whole.group(1) if whole else s


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
        video = video_id(video)
        found.setdefault(f'{video}_{clip_number(clip)}',
                         (video, start, end, text, str(path)))
  return found, bad


def _score(value: str | None) -> float | None:
  """An annotator's score; None for a blank cell (the annotator gave none).

  A blank cell adds nothing to the sum, as pandas' ``groupby().sum()`` in the
  authors' preprocessing skips the NaN it reads there.  Anything else that is
  not a finite number raises ValueError.
  """
  if value is None or not value.strip():
    return None
  x = float(value)
  if not math.isfinite(x):
    raise ValueError(value)
  return x


@dataclasses.dataclass
class ClipVotes:
  """One clip's annotator rows, merged over every label CSV."""
  sums: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(len(EMOTIONS)))
  counts: np.ndarray = dataclasses.field(  # rows that scored each emotion
      default_factory=lambda: np.zeros(len(EMOTIONS), int))
  files: list[str] = dataclasses.field(default_factory=list)
  bad: tuple[str, str] | None = None       # (file, what) of an unreadable score


@dataclasses.dataclass
class LabelFiles:
  """What ``Labels/*.csv`` say, and which of them could not say everything."""
  labels_dir: Path
  clips: dict[str, ClipVotes] = dataclasses.field(default_factory=dict)
  read: list[str] = dataclasses.field(default_factory=list)
  lacking: dict[str, tuple[str, ...]] = dataclasses.field(
      default_factory=dict)                # CSV -> emotion columns it lacks
  unusable: dict[str, str] = dataclasses.field(default_factory=dict)


def _add_csv(table: LabelFiles, path: Path) -> None:
  """Adds the annotator rows of one CSV to ``table``.

  A CSV without an emotion column still counts for the emotions it has: the
  authors concatenate all CSVs with pandas, so its rows hold NaN there, which
  the per-clip sum skips.  Only a clip that then has no score at all for an
  emotion is left without a label (see ``clip_label``).
  """
  name = str(path)
  with open(path, newline='', encoding='utf-8-sig', errors='replace') as f:
    rows = csv.DictReader(f)
    cols = [c.strip() for c in rows.fieldnames or []]
    rows.fieldnames = cols
    absent = [c for c in ID_COLUMNS if c not in cols]
    if absent:
      table.unusable[name] = f'no {" / ".join(absent)} column'
      return
    lacking = tuple(c for c in LABEL_COLUMNS if c not in cols)
    if lacking:
      table.lacking[name] = lacking
    table.read.append(name)
    for row in rows:
      video, clip = row['Input.VIDEO_ID'] or '', row['Input.CLIP'] or ''
      if not video.strip() or not clip.strip():
        continue
      votes = table.clips.setdefault(
          f'{video_id(video)}_{clip_number(clip)}', ClipVotes())
      if name not in votes.files:
        votes.files.append(name)
      for e, col in enumerate(LABEL_COLUMNS):
        try:
          x = _score(row.get(col))
        except ValueError:
          votes.bad = votes.bad or (name, f'line {rows.line_num}: {col} = '
                                          f'{row.get(col)!r} is not a number')
          continue
        if x is not None:
          votes.sums[e] += x
          votes.counts[e] += 1


def read_labels(root: Path) -> LabelFiles:
  """Every clip's annotator scores, summed over all ``Labels/*.csv``.

  The clip id is ``<video id>_<clip>`` (``video_id``, ``clip_number``).  A
  CSV that lacks a column the labels need is logged by file and column.
  """
  table = LabelFiles(root / 'Labels')
  for path in sorted(table.labels_dir.glob('*.csv')):
    try:
      _add_csv(table, path)
    except (OSError, csv.Error) as e:
      table.unusable[str(path)] = f'unreadable: {e}'
  for name, cols in table.lacking.items():
    logging.warning(
        'MOSEI labels: %s lacks column(s) %s; its rows give no score for '
        'them, and a clip with no score for an emotion in any CSV is skipped '
        'as unknown_label', name, ', '.join(cols))
  for name, why in table.unusable.items():
    logging.warning('MOSEI labels: %s is not used (%s)', name, why)
  return table


def _names(paths: list[str], most: int = 4) -> str:
  """File names for a skip detail: the first ``most``, then how many more."""
  shown = ', '.join(Path(p).name for p in paths[:most])
  return shown + (f' and {len(paths) - most} more' if len(paths) > most
                  else '')


def _not_found(table: LabelFiles) -> str:
  """The detail of a ``no_label`` skip: where the id was looked for."""
  if table.read:
    detail = f'in none of the {len(table.read)} label CSVs read ' \
             f'({_names(table.read)})'
  else:
    detail = f'no usable *.csv in {table.labels_dir}'
  if table.unusable:
    detail += '; not used: ' + '; '.join(
        f'{Path(p).name} ({why})' for p, why in table.unusable.items())
  return detail


def clip_label(table: LabelFiles, clip_id: str) -> np.ndarray | Skip:
  """A clip's multi-hot label by the sum-of-scores rule, or why it has none.

  ``no_label``: the id is in no CSV.  ``unknown_label``: one of its scores is
  not a number, or some emotion got no score at all (its rows are all in CSVs
  without that column, or blank there); the authors' pandas code would call
  such an emotion absent, we do not guess.
  """
  votes = table.clips.get(clip_id)
  if votes is None:
    return Skip(clip_id, 'no_label', str(table.labels_dir), _not_found(table))
  if votes.bad is not None:
    return Skip(clip_id, 'unknown_label', *votes.bad)
  unscored = [c for c, k in zip(LABEL_COLUMNS, votes.counts) if k == 0]
  if not unscored:
    return labels_from_sums(votes.sums)
  why: dict[str, list[str]] = {}     # reason -> the emotions it explains
  first = None
  for col in unscored:
    lack = [f for f in votes.files if col in table.lacking.get(f, ())]
    first = first or (lack[0] if lack else votes.files[0])
    if not lack:
      reason = 'blank in all its rows'
    else:
      reason = f'not a column of {_names(lack)}' + (
          ', blank in the others' if len(lack) < len(votes.files) else '')
    why.setdefault(reason, []).append(col)
  return Skip(clip_id, 'unknown_label', first,
              f'no score for an emotion in its rows from '
              f'{_names(votes.files)}: ' +
              '; '.join(f'{", ".join(cols)} {reason}'
                        for reason, cols in why.items()))


def labels_from_sums(sums: np.ndarray) -> np.ndarray:
  """MOSEI rule: an emotion is present when its annotator sum is above 0."""
  return (np.asarray(sums) > 0).astype(np.float32)


def read_raw(root: Path, ids: list[str]) -> common.SplitClips:
  transcripts, bad = read_transcripts(root)
  if bad:
    logging.warning('%d unreadable transcript lines ignored, first: %s %s',
                    len(bad), bad[0].file, bad[0].detail)
  table = read_labels(root)
  found: dict[str, Clip | Skip] = {}
  for clip_id in ids:
    tr, votes = transcripts.get(clip_id), table.clips.get(clip_id)
    if tr is None and votes is None:
      continue
    if tr is None:
      found[clip_id] = Skip(clip_id, 'no_transcript', votes.files[0])
      continue
    video, start, end, text, tr_file = tr
    label = clip_label(table, clip_id)
    if isinstance(label, Skip):
      found[clip_id] = label
    elif not text:
      found[clip_id] = Skip(clip_id, 'empty_transcript', tr_file)
    elif not end > start:
      found[clip_id] = Skip(clip_id, 'bad_boundaries', tr_file,
                            f'start {start} >= end {end}')
    else:
      found[clip_id] = Clip(
          clip_id, 'mosei', 'raw', text, label,
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
      found[clip_id] = Skip(clip_id, 'no_label', str(root / 'meta.pkl'),
                            f'{folder.name}/ is there, the id is not a key '
                            f'of meta.pkl')
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
