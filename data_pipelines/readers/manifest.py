"""Manifest reader: your own clips, one row per clip in a CSV or JSONL file.

Columns (JSONL: the keys of one JSON object per line):

* ``clip_id``: unique id of the clip (also its cache file name);
* ``video``: the video file; its frames give the faces;
* ``audio`` (optional): a wav file; empty or absent: the video's own audio
  track (decoded by ``data_pipelines.audio.read_video_audio``);
* ``start``, ``end`` (optional): the clip's span in seconds, in the video and
  in the wav; empty: from the start / to the end of the file;
* ``text``: the transcript;
* ``split``: ``train``, ``valid`` or ``test`` (case and spaces ignored);
* the labels, in ONE of two forms:
  - ``label``: one class name per row (single-label, multi-class, like
    IEMOCAP); the label names are the sorted distinct values over the whole
    manifest (all splits), so every split has the same label vector;
  - ``label:<name>`` columns holding numbers, an emotion being present when
    its value is > 0 (multi-label, like MOSEI); the names in column order.

Relative paths are relative to the manifest's folder.  A manifest that cannot
be read as a whole (missing column, no or mixed label columns, duplicate
clip id, a JSONL line that is not an object) raises ValueError naming the
file and the column or line.  A row that cannot be used (missing video or
wav, empty transcript, bad label value, bad start / end, split not one of
the three) is a ``Skip`` whose detail names the file, its line and the
column; a row with an unknown split is reported with the ``train`` split
only, so that a build lists it once.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from data_pipelines.readers.common import SPLITS, Clip, Skip, SplitClips

DATASET = 'manifest'
REQUIRED = ('clip_id', 'video', 'text', 'split')
OPTIONAL = ('audio', 'start', 'end')
LABEL = 'label'
LABEL_PREFIX = 'label:'
SUFFIXES = ('.csv', '.jsonl')
# What a folder given instead of the manifest file may hold.
DEFAULT_NAMES = ('manifest.csv', 'manifest.jsonl')
# The split with which rows of no known split are reported (once per build).
UNKNOWN_SPLIT_REPORTED_WITH = 'train'


@dataclasses.dataclass(frozen=True)
class Row:
  """One clip row: its line in the file (1-based) and its cells as text."""
  line: int
  cells: dict[str, str]

  def get(self, column: str) -> str:
    return self.cells.get(column, '').strip()


@dataclasses.dataclass(frozen=True)
class Manifest:
  """A parsed manifest: columns, rows, label set (no file on disk checked)."""
  path: Path
  columns: tuple[str, ...]
  rows: tuple[Row, ...]
  names: tuple[str, ...]
  multi_label: bool

  @property
  def label_columns(self) -> tuple[str, ...]:
    if self.multi_label:
      return tuple(LABEL_PREFIX + n for n in self.names)
    return (LABEL,)


def manifest_file(path: str | Path) -> Path:
  """The manifest file: ``path``, or ``manifest.csv|jsonl`` in a folder."""
  path = Path(path).expanduser()
  if path.is_dir():
    found = [path / n for n in DEFAULT_NAMES if (path / n).is_file()]
    if len(found) != 1:
      raise FileNotFoundError(
          f'{path} is a folder: expected exactly one of {DEFAULT_NAMES} in '
          f'it, found {[p.name for p in found]}')
    path = found[0]
  if not path.is_file():
    raise FileNotFoundError(f'manifest not found: {path}')
  if path.suffix.lower() not in SUFFIXES:
    raise ValueError(f'{path}: a manifest is a .csv or .jsonl file')
  return path.resolve()


def _cell(value) -> str:
  """A JSON value as the text a CSV cell would hold (null -> '')."""
  if value is None:
    return ''
  if isinstance(value, bool):
    return '1' if value else '0'
  if isinstance(value, (int, float)):
    return repr(value)
  if isinstance(value, str):
    return value
  return json.dumps(value)             # a list / object: a bad cell, kept


def _read_csv(path: Path) -> tuple[list[str], list[Row]]:
  with open(path, newline='', encoding='utf-8-sig') as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
      raise ValueError(f'{path}: empty manifest (no header line)')
    columns = [c.strip() for c in header]
    rows, line = [], reader.line_num + 1
    for record in reader:
      if any(cell.strip() for cell in record):
        if len(record) > len(columns):
          raise ValueError(f'{path}, line {line}: {len(record)} cells, the '
                           f'header has {len(columns)} columns')
        rows.append(Row(line, dict(zip(columns, record))))
      line = reader.line_num + 1
  return columns, rows


def _read_jsonl(path: Path) -> tuple[list[str], list[Row]]:
  columns: dict[str, None] = {}
  rows = []
  with open(path, encoding='utf-8-sig') as f:
    for line, text in enumerate(f, 1):
      if not text.strip():
        continue
      try:
        obj = json.loads(text)
      except json.JSONDecodeError as e:
        raise ValueError(f'{path}, line {line}: not JSON ({e})') from e
      if not isinstance(obj, dict):
        raise ValueError(f'{path}, line {line}: expected a JSON object, got '
                         f'{type(obj).__name__}')
      cells = {str(k).strip(): _cell(v) for k, v in obj.items()}
      columns.update(dict.fromkeys(cells))
      rows.append(Row(line, cells))
  return list(columns), rows


def parse(path: str | Path) -> Manifest:
  """Reads and checks the structure of a manifest (no file on disk looked at).

  Raises:
    ValueError: a required column is missing, no or both label forms, a
      duplicate column or clip id, an empty clip id, a malformed line.
  """
  path = manifest_file(path)
  if path.suffix.lower() == '.csv':
    columns, rows = _read_csv(path)
  else:
    columns, rows = _read_jsonl(path)
  seen = set()
  for c in columns:
    if c in seen:
      raise ValueError(f'{path}: column {c!r} appears twice in the header')
    seen.add(c)
  for c in REQUIRED:
    if c not in seen:
      raise ValueError(f'{path}: no column {c!r} (required columns: '
                       f'{", ".join(REQUIRED)}; found: {", ".join(columns)})')
  prefixed = [c for c in columns if c.startswith(LABEL_PREFIX)]
  if LABEL in seen and prefixed:
    raise ValueError(
        f'{path}: both a {LABEL!r} column and {LABEL_PREFIX}<name> columns '
        f'({", ".join(prefixed)}); use one form: {LABEL!r} (one class per '
        f'row) or {LABEL_PREFIX}<name> (a score per emotion)')
  if LABEL not in seen and not prefixed:
    raise ValueError(
        f'{path}: no label column: add {LABEL!r} (one class name per row) or '
        f'one {LABEL_PREFIX}<name> column per emotion (found: '
        f'{", ".join(columns)})')
  for c in prefixed:
    if not c[len(LABEL_PREFIX):].strip():
      raise ValueError(f'{path}: column {c!r} has no emotion name after '
                       f'{LABEL_PREFIX!r}')
  ids: dict[str, int] = {}
  for row in rows:
    clip_id = row.get('clip_id')
    if not clip_id:
      raise ValueError(f'{path}, line {row.line}, column clip_id: empty')
    if clip_id in ids:
      raise ValueError(f'{path}, line {row.line}, column clip_id: duplicate '
                       f'clip id {clip_id!r} (first on line {ids[clip_id]})')
    ids[clip_id] = row.line
  if prefixed:
    names = tuple(c[len(LABEL_PREFIX):].strip() for c in prefixed)
    multi = True
  else:
    names = tuple(sorted({row.get(LABEL) for row in rows} - {''}))
    multi = False
    if not names:
      raise ValueError(f'{path}: column {LABEL!r} is empty on every row: no '
                       'label names')
  return Manifest(path, tuple(columns), tuple(rows), names, multi)


def label_set(path: str | Path) -> tuple[tuple[str, ...], bool]:
  """(label names in label-vector order, multi_label) of a manifest.

  Reads the file only (no video is looked at), so the command line can set
  ``num_emotions`` before any preprocessing.
  """
  m = parse(path)
  return m.names, m.multi_label


# ------------------------------------------------------------------ one row


class _RowError(Exception):
  """A row that cannot be used: becomes a Skip."""

  def __init__(self, reason: str, column: str, message: str, file: str = ''):
    super().__init__(message)
    self.reason, self.column, self.message, self.file = (reason, column,
                                                         message, file)


def _labels(m: Manifest, row: Row) -> np.ndarray:
  out = np.zeros(len(m.names), np.float32)
  if not m.multi_label:
    value = row.get(LABEL)
    if value not in m.names:          # only '' can be outside the label set
      raise _RowError('unknown_label', LABEL, 'empty label')
    out[m.names.index(value)] = 1.0
    return out
  for i, column in enumerate(m.label_columns):
    value = row.get(column)
    try:
      score = float(value)
    except ValueError:
      score = math.nan
    if not math.isfinite(score):
      raise _RowError('unknown_label', column,
                      f'{value!r} is not a number' if value else
                      'empty (write 0 for an absent emotion)')
    out[i] = float(score > 0)
  return out


def _seconds(row: Row, column: str) -> float | None:
  value = row.get(column)
  if not value:
    return None
  try:
    t = float(value)
  except ValueError:
    t = math.nan
  if not math.isfinite(t) or t < 0:
    raise _RowError('bad_time', column,
                    f'{value!r} is not a time in seconds (>= 0)')
  return t


def _file(m: Manifest, row: Row, column: str) -> str:
  """The row's path in ``column`` (relative to the manifest), '' if empty."""
  value = row.get(column)
  if not value:
    return ''
  p = Path(value).expanduser()
  return str(p if p.is_absolute() else m.path.parent / p)


def _clip(m: Manifest, row: Row) -> Clip:
  """The row as a Clip (raises _RowError when it cannot be used)."""
  text = row.get('text')
  if not text:
    raise _RowError('empty_transcript', 'text', 'empty transcript')
  labels = _labels(m, row)
  start, end = _seconds(row, 'start'), _seconds(row, 'end')
  if start is not None and end is not None and end <= start:
    raise _RowError('bad_time', 'end', f'end {end} s is not after start '
                    f'{start} s')
  video = _file(m, row, 'video')
  if not video:
    raise _RowError('missing_video', 'video', 'empty video path')
  if not Path(video).is_file():
    raise _RowError('missing_video', 'video', f'video file not found: '
                    f'{video}', file=video)
  wav = _file(m, row, 'audio')
  if wav and not Path(wav).is_file():
    raise _RowError('missing_audio', 'audio', f'audio file not found: {wav}',
                    file=wav)
  return Clip(clip_id=row.get('clip_id'), dataset=DATASET, layout='raw',
              text=text, labels=labels, audio_path=wav or None,
              video_path=video, start=start, end=end)


def _split_of(row: Row) -> str:
  return row.get('split').lower()


def read(manifest_path: str | Path, split: str) -> SplitClips:
  """The clips of ``split`` in a manifest, in file order.

  Args:
    manifest_path: the .csv / .jsonl file (or a folder holding
      manifest.csv or manifest.jsonl).
    split: 'train' | 'valid' | 'test'; the rows whose ``split`` column says so.

  Returns:
    SplitClips: usable clips, skipped rows (with reason, file, and a detail
    naming the manifest, the line and the column) and no missing ids (the
    manifest is its own split list).  Rows whose split is none of the three
    are skipped (``unknown_split``) with the train split.
  """
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  m = parse(manifest_path)
  clips, skipped = [], []
  for row in m.rows:
    row_split = _split_of(row)
    clip_id = row.get('clip_id')
    where = f'{m.path}, line {row.line}'
    if row_split not in SPLITS:
      if split == UNKNOWN_SPLIT_REPORTED_WITH:
        skipped.append(Skip(
            clip_id, 'unknown_split', str(m.path),
            f'{where}, column split: {row.get("split")!r} is not one of '
            f'{", ".join(SPLITS)}'))
      continue
    if row_split != split:
      continue
    try:
      clips.append(_clip(m, row))
    except _RowError as e:
      skipped.append(Skip(clip_id, e.reason, e.file or str(m.path),
                          f'{where}, column {e.column}: {e.message}'))
  return SplitClips(clips, skipped, [], 'raw', str(m.path.parent))
