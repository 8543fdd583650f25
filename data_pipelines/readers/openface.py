"""OpenFace 2.0 CSVs -> the 35 facial action units per frame of the baselines.

OpenFace 2.0's ``FeatureExtraction`` writes one CSV per video, one row per
frame, with the columns of ``OPENFACE_COLUMNS`` (714 of them; names and values
are separated by ``', '``, so a name read naively has a leading space, e.g.
``' AU01_r'``: names are stripped here).  The baselines (MESM.md) use the
last 35 values of each row: the 17 AU intensities ``AU.._r`` (0..5) then the
18 AU presences ``AU.._c`` (0 or 1), in ``AU_COLUMNS`` order.  The columns are
looked up by name, so a CSV with other or reordered columns works as long as
it has those 35.

Rules:

* Failed frames (``success`` 0, where OpenFace found no face) are kept as
  rows of zeros by default (``failed='zero'``): one row per video frame, so
  rows stay aligned in time with the video (OpenFace itself writes zeros
  there).  ``failed='drop'`` leaves them out.  A CSV without a ``success``
  column counts every row as a success.
* Time span: rows whose ``timestamp`` (seconds) is in ``[start, end]``, both
  ends included; ``None`` leaves that side open.  Without a ``timestamp``
  column the time of row ``frame`` is ``(frame - 1) / fps``.
* Several faces (``face_id``, as ``FaceLandmarkVidMulti`` writes): only the
  rows of the lowest face id are kept, unless ``face_id`` is given.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

AU_R = ('AU01_r', 'AU02_r', 'AU04_r', 'AU05_r', 'AU06_r', 'AU07_r', 'AU09_r',
        'AU10_r', 'AU12_r', 'AU14_r', 'AU15_r', 'AU17_r', 'AU20_r', 'AU23_r',
        'AU25_r', 'AU26_r', 'AU45_r')
AU_C = ('AU01_c', 'AU02_c', 'AU04_c', 'AU05_c', 'AU06_c', 'AU07_c', 'AU09_c',
        'AU10_c', 'AU12_c', 'AU14_c', 'AU15_c', 'AU17_c', 'AU20_c', 'AU23_c',
        'AU25_c', 'AU26_c', 'AU28_c', 'AU45_c')
AU_COLUMNS = AU_R + AU_C                      # 35: the baselines' features
NUM_AUS = len(AU_COLUMNS)

# Every column of an OpenFace 2.0 FeatureExtraction CSV, in order (714).
OPENFACE_COLUMNS = (
    ('frame', 'face_id', 'timestamp', 'confidence', 'success')
    + tuple(f'gaze_{e}_{a}' for e in (0, 1) for a in 'xyz')
    + ('gaze_angle_x', 'gaze_angle_y')
    + tuple(f'eye_lmk_{a}_{i}' for a in 'xyXYZ' for i in range(56))
    + ('pose_Tx', 'pose_Ty', 'pose_Tz', 'pose_Rx', 'pose_Ry', 'pose_Rz')
    + tuple(f'{a}_{i}' for a in 'xyXYZ' for i in range(68))
    + ('p_scale', 'p_rx', 'p_ry', 'p_rz', 'p_tx', 'p_ty')
    + tuple(f'p_{i}' for i in range(34))
    + AU_COLUMNS)

FAILED_RULES = ('zero', 'drop')


class OpenFaceError(ValueError):
  """An OpenFace CSV that cannot be read (missing columns, bad values)."""


def _float(value: str, path, line: int, column: str) -> float:
  try:
    return float(value)
  except ValueError:
    raise OpenFaceError(f'{path}: line {line}, column {column!r}: '
                        f'{value.strip()!r} is not a number') from None


def read_openface_csv(path: str | Path, *, start: float | None = None,
                      end: float | None = None, failed: str = 'zero',
                      face_id: int | None = None, fps: float = 30.0,
                      return_timestamps: bool = False):
  """The 35 action units per frame of an OpenFace 2.0 CSV.

  Args:
    path: the CSV.
    start, end: the time span in seconds (``timestamp`` in ``[start, end]``).
    failed: ``'zero'`` (failed frames as rows of zeros) or ``'drop'``.
    face_id: the face to keep; None: the lowest face id of the file.
    fps: frame rate used for times only when there is no ``timestamp``.
    return_timestamps: also return the rows' times.

  Returns:
    ``[T, 35]`` float32 in ``AU_COLUMNS`` order (17 ``AU.._r``, 18
    ``AU.._c``); with ``return_timestamps``, ``(aus, times [T] float64)``.

  Raises:
    FileNotFoundError: no such file.
    OpenFaceError: an empty file, missing AU columns or a bad value (the
      message names the file, the line and the column).
  """
  if failed not in FAILED_RULES:
    raise ValueError(f'failed must be one of {FAILED_RULES}, got {failed!r}')
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'no OpenFace CSV {path}')
  with open(path, newline='', encoding='utf-8', errors='replace') as f:
    reader = csv.reader(f, skipinitialspace=True)
    header = next(reader, None)
    if not header:
      raise OpenFaceError(f'{path}: empty file (no header)')
    names = [h.strip() for h in header]
    col = {name: i for i, name in reversed(list(enumerate(names)))}
    missing = [c for c in AU_COLUMNS if c not in col]
    if missing:
      raise OpenFaceError(f'{path}: not an OpenFace 2.0 CSV: no column(s) '
                          f'{missing} (found {len(names)} columns)')
    au_idx = [col[c] for c in AU_COLUMNS]
    rows = []
    for line, row in enumerate(reader, 2):
      if not row or not ''.join(row).strip():
        continue
      if len(row) < len(names):
        raise OpenFaceError(f'{path}: line {line}: {len(row)} values, header '
                            f'has {len(names)} columns')
      fid = int(_float(row[col['face_id']], path, line, 'face_id')) \
          if 'face_id' in col else 0
      if 'timestamp' in col:
        t = _float(row[col['timestamp']], path, line, 'timestamp')
      elif 'frame' in col:
        t = (_float(row[col['frame']], path, line, 'frame') - 1) / fps
      else:
        t = len(rows) / fps
      ok = ('success' not in col or
            _float(row[col['success']], path, line, 'success') != 0)
      aus = [_float(row[i], path, line, c) for i, c in zip(au_idx, AU_COLUMNS)]
      rows.append((fid, t, ok, aus))
  if face_id is None and rows:
    face_id = min(r[0] for r in rows)
  keep = [r for r in rows if r[0] == face_id and
          (start is None or r[1] >= start) and (end is None or r[1] <= end) and
          (r[2] or failed == 'zero')]
  aus = np.zeros((len(keep), NUM_AUS), np.float32)
  for i, (_, _, ok, values) in enumerate(keep):
    if ok:
      aus[i] = values
  if return_timestamps:
    return aus, np.asarray([r[1] for r in keep], np.float64)
  return aus


def find_openface_csv(folder: str | Path, video_id: str) -> Path:
  """``folder/<video_id>.csv``, else the one ``<video_id>.csv`` below it.

  Raises:
    FileNotFoundError: none, or several below ``folder``.
  """
  folder = Path(folder)
  direct = folder / f'{video_id}.csv'
  if direct.is_file():
    return direct
  found = sorted(folder.rglob(f'{video_id}.csv')) if folder.is_dir() else []
  if len(found) == 1:
    return found[0]
  if found:
    raise FileNotFoundError(f'{folder}: several {video_id}.csv: '
                            f'{[str(p) for p in found]}')
  raise FileNotFoundError(f'{folder}: no OpenFace CSV {video_id}.csv (nor '
                          'below it)')


def read_openface_dir(folder: str | Path, video_id: str, **options):
  """``read_openface_csv`` of ``<video_id>.csv`` in (or below) ``folder``."""
  return read_openface_csv(find_openface_csv(folder, video_id), **options)


def _fmt(x: float) -> str:
  return f'{x:.6g}'


def write_openface_csv(path: str | Path, aus: np.ndarray, *,
                       timestamps: np.ndarray | None = None,
                       success: np.ndarray | None = None, fps: float = 30.0,
                       face_id: int = 0) -> Path:
  """Writes an OpenFace 2.0 style CSV (all 714 columns) for tests and demos.

  Args:
    path: the CSV to write.
    aus: ``[T, 35]`` action units in ``AU_COLUMNS`` order.
    timestamps: ``[T]`` seconds; default ``frame / fps`` from 0.
    success: ``[T]`` 0/1; default all 1.  Failed rows are written with
      zeros, as OpenFace does.
    fps: frame rate for the default timestamps.
    face_id: the ``face_id`` column.

  Returns:
    ``path``.
  """
  aus = np.asarray(aus, np.float64)
  if aus.ndim != 2 or aus.shape[1] != NUM_AUS:
    raise ValueError(f'aus must be [T, {NUM_AUS}], got {aus.shape}')
  n = aus.shape[0]
  times = np.arange(n) / fps if timestamps is None else np.asarray(timestamps)
  ok = np.ones(n, int) if success is None else np.asarray(success, int)
  other = len(OPENFACE_COLUMNS) - 5 - NUM_AUS
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(', '.join(OPENFACE_COLUMNS) + '\n')
    for i in range(n):
      conf = 0.98 if ok[i] else 0.0
      values = aus[i] if ok[i] else np.zeros(NUM_AUS)
      fields = ([str(i + 1), str(face_id), f'{times[i]:.3f}', _fmt(conf),
                 str(int(ok[i]))] + ['0'] * other + [_fmt(v) for v in values])
      f.write(', '.join(fields) + '\n')
  return path
