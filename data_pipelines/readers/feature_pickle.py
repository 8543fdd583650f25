"""Hand-crafted feature pickles (the unaligned layout of MulT and MMSA).

The baselines of Tables 3 and 4 (MESM.md) read CMU-MOSEI's features from
pickles holding, per split, arrays keyed ``id``, ``text``, ``audio`` and
``vision``:

* a dict of splits, ``data[split][key]``, as MulT's
  ``mosei_senti_data_noalign.pkl`` and MMSA's ``unaligned_50.pkl``;
* or one split per file, ``data[key]``, as the MESM original reads
  ``mosei_senti_hcf_<split>.pkl``.

A modality is either a dense zero-padded array ``[N, L, D]`` or a sequence of
N per-clip arrays ``[L_i, D]`` (already exact, kept as they are).  ``id`` is
``[N]`` (one string per clip) or ``[N, k]`` (a row of strings per clip; MulT
stores bytes).  Other keys (``labels``, ``raw_text``, ...) are ignored.

Frames (dense arrays only).  Non-finite values (MulT's audio holds ``-inf``)
are set to 0 first, as MulT and MMSA do when loading.  Then every row of the
array is kept, zero padding included, as the originals feed them (MESM's
``MOSEI_baseline``, MulT's and Modality-Transferable-MER's datasets index the
dense arrays as they are; no trimming of zero rows).  Only when the file has
``<modality>_lengths`` (MMSA: ``audio_lengths``, ``vision_lengths``), the
file's own statement of each clip's real length, the clip keeps that many
rows, taken at the end of the array when the rows before them are all zero
and the rows after them are not (front padding), else at the start (MMSA's
end padding); a length above the array's is clamped.

Id rule (``normalise_clip_id``): this project names a clip
``<video>_<clip>``.  ``'abc[3]'`` (CMU SDK) and ``'abc$_$3'`` (MMSA) become
``'abc_3'``; the clip number is written without leading zeros or a ``.0``
(``'abc$_$03'`` -> ``'abc_3'``); any other string is taken to be in this
project's form already and is only stripped.  A row ``[video, clip]`` (or
``[video, clip, '']``) gives ``'<video>_<clip>'``; a row whose first entry is
already a clip id (``'abc[4]'``) uses that entry.  A row of three entries
whose second and third are numbers is MulT's ``(video, start, end)`` (seconds
in the video; MulT's ``mosei_senti_data_noalign.pkl`` stores ``id`` as
``[N, 3]`` bytes so): it has no clip number, and is mapped to the clip of
that video whose [start, end] in the labels' data (``clip_times``: the MOSEI
transcripts' ``video___clip___start___end___text`` lines) is nearest, both
ends within ``TIME_TOLERANCE_S``; such a row that matches no clip keeps the
id ``'<video>@<start>-<end>'`` (no label has that form: the clip counts as
missing from the features).  Without ``clip_times`` (e.g. labels in the
processed layout, which has no times) a time row raises ValueError that says
so; ``normalise_ids=False`` reads such a file with raw ids.

The MESM authors' MOSEI features (``read_feature_files``): a folder (theirs
is ``MOSEI_HCF_FEATURES``) holding ``mosei_senti_hcf_{train,valid,test}.pkl``,
one split per file, each a dict of arrays ``id`` (this project's clip ids as
they are: the original looks each split-file id up in it), ``vision``,
``audio`` and ``text``; or those files named one by one (comma-separated).
Widths are the files' (by a third-party report 35-d visual, 74-d COVAREP
audio, 300-d GloVe text): nothing here fixes a width.

The MESM authors' IEMOCAP features (``read_iemocap_hcf``).  A folder (theirs
is named ``IEMOCAP_HCF_FEATURES``) holds, per phase ``train`` / ``valid`` /
``test``, three plain pickles (``pickle.load``; named ``.pt`` but not torch
files): ``{phase}_text_features.pt``, ``{phase}_audio_features.pt`` and
``{phase}_video_features.pt``, each a dict keyed by utterance id
(``Ses01F_impro01_F000``: this project's IEMOCAP clip ids as they are).

* Side of an utterance: split the id on ``'_'``; it is the left speaker
  (``'L'``) when the last character of the first part equals the first
  character of the last part (``Ses01F_..._F000`` -> L), else ``'R'``
  (``Ses01F_..._M003`` -> R).
* text: ``text[uid]`` is a sequence of word vectors ``[L, 300]`` (a list of
  lists or an array); an empty one gives ``[0, 300]`` (the original feeds
  zeros; the builder stores one zero frame).
* audio: ``audio[uid][side]`` is ``[D_full, T]``, features x frames
  (TRANSPOSED relative to this module's ``[T, D]``), D_full the full DisVoice
  vector (at least 763 rows).  The original keeps rows 0..33, then
  655..762, then 100 and 101, in that order: 34 + 108 + 2 = 144 values per
  frame (``HCF_AUDIO_ROWS``), stored as ``[T, 144]``.
* video: ``video[uid]`` is a dict ``image_L_<i>`` / ``image_R_<i>`` -> one
  OpenFace vector per frame; the last 35 values (the action units) are kept,
  for frames ``i = 0 .. len(dict) // 2 - 1`` of the utterance's side
  (``image_<side>_<i>``), skipping an index whose key is missing:
  ``[Lv, 35]``.

Non-finite values are set to 0, as for the pickles above.  An utterance that
is in one or two of its phase's three files but not in all three is left
out: ``read_iemocap_hcf_report`` returns those as ``(phase, id, files
lacking it)``, ``read_iemocap_hcf`` logs them (a warning).  An id in two
phases, a missing file or a value of another shape raises an error that names
the file (``FileNotFoundError``, ``FeatureFileError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import pickle
import re
from pathlib import Path
from typing import NamedTuple

from absl import logging
import numpy as np

MODALITIES = ('text', 'audio', 'vision')
SPLIT_NAMES = ('train', 'valid', 'test', 'dev', 'val')
ID_KEY = 'id'


class FeatureFileError(ValueError):
  """A feature pickle whose layout is not the one described above."""


def _as_str(value) -> str:
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode('utf-8', errors='replace').strip()
  return str(value).strip()


def _clip_number(value: str) -> str | None:
  """``'3'``, ``'03'``, ``'3.0'`` -> ``'3'``; anything else None."""
  m = re.fullmatch(r'0*(\d+)(?:\.0*)?', value.strip())
  if not m:
    return None
  return m.group(1) or '0'


def _normalise_str(s: str) -> tuple[str, bool]:
  """(id in project form, whether a clip marker was found)."""
  m = re.fullmatch(r'(.+)\[\s*([0-9.]+)\s*\]', s)
  if m and _clip_number(m.group(2)) is not None:
    return f'{m.group(1).strip()}_{_clip_number(m.group(2))}', True
  if '$_$' in s:
    video, clip = s.rsplit('$_$', 1)
    number = _clip_number(clip)
    if number is not None and video.strip():
      return f'{video.strip()}_{number}', True
  return s, False


TIME_TOLERANCE_S = 0.1

# video -> ((start s, end s, clip id), ...): the labels' clips with times.
ClipTimes = Mapping[str, Sequence[tuple[float, float, str]]]


def clip_times_of(clips) -> dict[str, list[tuple[float, float, str]]]:
  """``ClipTimes`` of clips with ``clip_id``, ``start`` and ``end``
  (``readers.Clip``; the video is the clip id up to its last ``'_'``);
  clips without times (processed layout) are left out."""
  out: dict[str, list[tuple[float, float, str]]] = {}
  for clip in clips:
    if clip.start is None or clip.end is None:
      continue
    video = clip.clip_id.rpartition('_')[0]
    out.setdefault(video, []).append((float(clip.start), float(clip.end),
                                      clip.clip_id))
  return out


def _number(value: str) -> float | None:
  try:
    x = float(value)
  except ValueError:
    return None
  return x if np.isfinite(x) else None


def _time_row(parts: list[str]) -> tuple[str, float, float] | None:
  """``(video, start, end)`` of a MulT row ``[video, start, end]``, else
  None (a row whose first entry is marked is a clip id, not a time row)."""
  if len(parts) != 3 or _normalise_str(parts[0])[1]:
    return None
  start, end = _number(parts[1]), _number(parts[2])
  if start is None or end is None:
    return None
  return parts[0], start, end


def _match_times(video: str, start: float, end: float,
                 clip_times: ClipTimes,
                 tolerance: float = TIME_TOLERANCE_S) -> str:
  """The clip id of ``video`` nearest to [start, end] (both ends within
  ``tolerance``), else ``'<video>@<start>-<end>'``."""
  best, best_err = None, None
  for s, e, clip_id in clip_times.get(video, ()):
    err = max(abs(s - start), abs(e - end))
    if err <= tolerance and (best_err is None or err < best_err):
      best, best_err = clip_id, err
  return best if best is not None else f'{video}@{start:g}-{end:g}'


def normalise_clip_id(raw, clip_times: ClipTimes | None = None) -> str:
  """An MMSA / MulT / CMU SDK clip id -> this project's ``<video>_<clip>``.

  Args:
    raw: a string or bytes (``'abc[3]'``, ``'abc$_$3'``, ``'abc_3'``), or a
      row of them (``[video, clip, ...]``, MulT's ``[video, start, end]``).
    clip_times: the labels' clips with their times (``clip_times_of``), to
      map MulT's ``(video, start, end)`` rows.

  Returns:
    The id in this project's form (the rule is in the module docstring).

  Raises:
    ValueError: an empty id, a row without a clip number that is not a
      time row, or a time row without ``clip_times``.
  """
  if isinstance(raw, np.ndarray) and raw.ndim == 0:
    raw = raw.item()
  if isinstance(raw, (str, bytes, np.str_, np.bytes_)):
    s = _as_str(raw)
    if not s:
      raise ValueError('empty clip id')
    return _normalise_str(s)[0]
  try:
    parts = [_as_str(p) for p in np.asarray(raw, dtype=object).reshape(-1)]
  except TypeError:
    parts = [_as_str(raw)]
  parts = [p for p in parts if p] if len(parts) > 1 else parts
  if not parts or not parts[0]:
    raise ValueError(f'empty clip id {raw!r}')
  timed = _time_row(parts)
  if timed is not None:
    if clip_times is None:
      raise ValueError(
          f'clip id {raw!r} is a (video, start, end) row (MulT): it has no '
          'clip number and is mapped by its times to the labels\' clips, '
          'which needs their times (clip_times; MOSEI labels in the raw '
          'layout, whose transcripts give each clip\'s start and end)')
    return _match_times(*timed, clip_times)
  first, marked = _normalise_str(parts[0])
  if marked or len(parts) == 1:
    return first
  number = _clip_number(parts[1])
  if number is None:
    raise ValueError(
        f'clip id {raw!r}: the row has no clip number (second entry '
        f'{parts[1]!r} is not an integer), so it cannot be mapped to '
        '<video>_<clip>')
  return f'{first}_{number}'


def _raw_id(raw) -> str:
  """An id kept as in the file: a string, or a row's entries joined by '_'."""
  if isinstance(raw, (str, bytes, np.str_, np.bytes_)):
    return _as_str(raw)
  return '_'.join(_as_str(p) for p in np.asarray(raw, dtype=object).reshape(-1))


def _trim(x: np.ndarray, length: int | None) -> np.ndarray:
  """One dense clip [L, D]: every row, or ``length`` rows (module doc)."""
  if length is None:
    return x
  nonzero = np.any(x != 0, axis=1)
  length = max(0, min(int(length), x.shape[0]))
  pad = x.shape[0] - length
  front = pad > 0 and not nonzero[:pad].any() and nonzero[length:].any()
  return x[pad:] if front else x[:length]


def _clips_of(path: Path, split: str | None, table, key: str,
              n: int) -> list[np.ndarray]:
  """The N per-clip float32 arrays [L_i, D] of one modality of one split."""
  where = f'{path}: split {split!r} key {key!r}' if split else (
      f'{path}: key {key!r}')
  value = table[key]
  if isinstance(value, np.ndarray) and value.dtype != object:
    if value.ndim != 3:
      raise FeatureFileError(f'{where}: expected a [N, L, D] array, got shape '
                             f'{value.shape}')
    if value.shape[0] != n:
      raise FeatureFileError(f'{where}: {value.shape[0]} clips but {n} ids')
    dense = np.nan_to_num(value.astype(np.float32), nan=0.0, posinf=0.0,
                          neginf=0.0)
    lengths = table.get(f'{key}_lengths')
    if lengths is not None:
      lengths = np.asarray(lengths).reshape(-1)
      if lengths.shape[0] != n:
        raise FeatureFileError(f'{where}_lengths: {lengths.shape[0]} lengths '
                               f'but {n} ids')
    return [_trim(dense[i], None if lengths is None else lengths[i])
            for i in range(n)]
  if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, str):
    raise FeatureFileError(f'{where}: expected a [N, L, D] array or a list of '
                           f'N [L, D] arrays, got {type(value).__name__}')
  if len(value) != n:
    raise FeatureFileError(f'{where}: {len(value)} clips but {n} ids')
  clips = []
  for i, item in enumerate(value):
    arr = np.asarray(item, np.float32)
    if arr.ndim != 2:
      raise FeatureFileError(f'{where}: clip {i} has shape {arr.shape}, '
                             'expected [L, D]')
    clips.append(np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0))
  return clips


def _read_split(path: Path, split: str | None, table, normalise_ids: bool,
                clip_times: ClipTimes | None = None
                ) -> dict[str, dict[str, np.ndarray]]:
  where = f'{path}: split {split!r}' if split else f'{path}'
  if not isinstance(table, Mapping):
    raise FeatureFileError(f'{where}: expected a dict with keys '
                           f'{(ID_KEY,) + MODALITIES}, got '
                           f'{type(table).__name__}')
  for key in (ID_KEY,) + MODALITIES:
    if key not in table:
      raise FeatureFileError(f'{where}: no key {key!r} (keys: '
                             f'{sorted(map(str, table))})')
  ids = table[ID_KEY]
  if isinstance(ids, (str, bytes)) or not hasattr(ids, '__len__'):
    raise FeatureFileError(f'{where} key {ID_KEY!r}: expected [N] or [N, k] '
                           f'ids, got {type(ids).__name__}')
  ids = list(ids)
  n = len(ids)
  per_key = {key: _clips_of(path, split, table, key, n) for key in MODALITIES}
  out = {}
  for i, raw in enumerate(ids):
    try:
      clip_id = (normalise_clip_id(raw, clip_times) if normalise_ids
                 else _raw_id(raw))
    except ValueError as e:
      raise FeatureFileError(f'{where} key {ID_KEY!r} row {i}: {e}; read with '
                             'normalise_ids=False to keep raw ids') from e
    if clip_id in out:
      raise FeatureFileError(f'{where} key {ID_KEY!r}: clip id {clip_id!r} '
                             f'appears twice (row {i})')
    out[clip_id] = {key: per_key[key][i] for key in MODALITIES}
  return out


def read_feature_pickle(path: str | Path, split: str | None = None, *,
                        normalise_ids: bool = True,
                        clip_times: ClipTimes | None = None
                        ) -> dict[str, dict[str, np.ndarray]]:
  """Reads a MulT / MMSA / MESM feature pickle into per-clip arrays.

  Args:
    path: the pickle file.
    split: for a dict-of-splits file, the split to read (``None``: all splits
      merged, an id in two splits being an error).  A one-split file is read
      whatever ``split`` is (the file is taken to be that split).
    normalise_ids: map ids to ``<video>_<clip>`` (``normalise_clip_id``);
      False keeps them as in the file (a row's entries joined by ``'_'``).
    clip_times: the labels' clips with times (``clip_times_of``): maps
      MulT's ``(video, start, end)`` rows to their clip ids.

  Returns:
    clip id -> ``{'text': [Lt, Dt], 'audio': [La, Da], 'vision': [Lv, Dv]}``
    float32 at the file's widths, every frame of a dense array kept
    (``<modality>_lengths`` only: that many; module docstring), in file
    order.

  Raises:
    FileNotFoundError: no such file.
    FeatureFileError: the layout is wrong (the message names the file, the
      split and the key).
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'no feature pickle {path}')
  data = _unpickle(path)
  if not isinstance(data, Mapping):
    raise FeatureFileError(f'{path}: expected a dict of splits or a dict with '
                           f'keys {(ID_KEY,) + MODALITIES}, got '
                           f'{type(data).__name__}')
  if ID_KEY in data or any(key in data for key in MODALITIES):
    return _read_split(path, None, data, normalise_ids, clip_times)
  splits = [key for key in data if key in SPLIT_NAMES]
  if not splits:
    raise FeatureFileError(
        f'{path}: neither a split dict (keys {SPLIT_NAMES}) nor one split '
        f'(keys {(ID_KEY,) + MODALITIES}); keys: {sorted(map(str, data))}')
  if split is not None:
    if split not in data:
      raise FeatureFileError(f'{path}: no split {split!r} (splits: {splits})')
    return _read_split(path, split, data[split], normalise_ids,
                       clip_times)
  out = {}
  for name in splits:
    for clip_id, feats in _read_split(path, name, data[name], normalise_ids,
                                      clip_times).items():
      if clip_id in out:
        raise FeatureFileError(f'{path}: clip id {clip_id!r} is in two splits '
                               f'(again in {name!r}); pass split=')
      out[clip_id] = feats
  return out


MOSEI_HCF_FILE = 'mosei_senti_hcf_{split}.pkl'
MOSEI_HCF_SPLITS = ('train', 'valid', 'test')


def feature_files(source: str | Path) -> list[Path]:
  """The pickle files of a ``features_pickle`` value (no IEMOCAP folder).

  ``source``: one pickle; a folder holding the MESM authors' MOSEI files
  ``mosei_senti_hcf_{train,valid,test}.pkl`` (all three); or several
  pickles separated by commas (e.g. those three files).

  Raises:
    FileNotFoundError: a file that is not there; a folder without the
      three files (the message lists what the folder holds).
  """
  text = str(source)
  if ',' in text:
    files = [Path(p.strip()).expanduser() for p in text.split(',')
             if p.strip()]
  else:
    path = Path(text).expanduser()
    if path.is_dir():
      files = [path / MOSEI_HCF_FILE.format(split=s)
               for s in MOSEI_HCF_SPLITS]
      lacking = [f.name for f in files if not f.is_file()]
      if lacking:
        held = sorted(p.name for p in path.iterdir())[:10]
        raise FileNotFoundError(
            f'{path}: a feature folder holds the MESM authors\' MOSEI files '
            f'mosei_senti_hcf_{{train,valid,test}}.pkl (or, for IEMOCAP, '
            f'{{train,valid,test}}_{{text,audio,video}}_features.pt); '
            f'{", ".join(lacking)} not there (it holds: {held})')
      return files
    files = [path]
  for f in files:
    if not f.is_file():
      raise FileNotFoundError(f'no feature pickle {f}')
  return files


def read_feature_files(source: str | Path, *,
                       clip_times: ClipTimes | None = None
                       ) -> dict[str, dict[str, np.ndarray]]:
  """``read_feature_pickle`` of every file of ``feature_files(source)``,
  merged (an id in two files is an error naming both)."""
  out: dict[str, dict[str, np.ndarray]] = {}
  where: dict[str, Path] = {}
  for path in feature_files(source):
    for clip_id, feats in read_feature_pickle(
        path, clip_times=clip_times).items():
      if clip_id in out:
        raise FeatureFileError(f'{path}: clip id {clip_id!r} is also in '
                               f'{where[clip_id]}')
      out[clip_id], where[clip_id] = feats, path
  return out


def feature_widths(feats: Mapping[str, Mapping[str, np.ndarray]],
                   where: str = 'the features') -> dict[str, int]:
  """``{'text': Dt, 'audio': Da, 'vision': Dv}``: the one width of each
  modality over every clip (FeatureFileError if two clips differ or there
  is no clip)."""
  widths: dict[str, int] = {}
  first: dict[str, str] = {}
  for clip_id, clip in feats.items():
    for m in MODALITIES:
      d = int(np.shape(clip[m])[-1])
      if m not in widths:
        widths[m], first[m] = d, clip_id
      elif widths[m] != d:
        raise FeatureFileError(
            f'{where}: {m} features of clip {clip_id} are {d} wide, those of '
            f'clip {first[m]} {widths[m]}: one width per modality')
  if len(widths) != len(MODALITIES):
    raise FeatureFileError(f'{where}: no clip')
  return widths


HCF_PHASES = ('train', 'valid', 'test')
HCF_FILES = {'text': 'text', 'audio': 'audio', 'vision': 'video'}
HCF_TEXT_DIM = 300
HCF_VISION_DIM = 35
HCF_AUDIO_ROWS = np.concatenate([np.arange(0, 34), np.arange(655, 763),
                                 np.array([100, 101])])
HCF_MIN_AUDIO_ROWS = 763


class IemocapHcf(NamedTuple):
  """What ``read_iemocap_hcf_report`` read.

  Attributes:
    features: clip id -> ``{'text', 'audio', 'vision'}`` float32 arrays.
    incomplete: ``(phase, clip id, names of the files lacking it)`` of each
      utterance left out because one or two of its phase's files lack it.
  """
  features: dict[str, dict[str, np.ndarray]]
  incomplete: list[tuple[str, str, tuple[str, ...]]]


def hcf_file(folder: str | Path, phase: str, modality: str) -> Path:
  """``<folder>/<phase>_<text|audio|video>_features.pt`` of a modality."""
  return Path(folder) / f'{phase}_{HCF_FILES[modality]}_features.pt'


def hcf_side(uid: str) -> str:
  """``'L'`` or ``'R'``: the speaker side of an IEMOCAP utterance id (rule
  in the module docstring).

  Raises:
    ValueError: the id has no ``'_'`` or an empty first or last part.
  """
  parts = uid.split('_')
  if len(parts) < 2 or not parts[0] or not parts[-1]:
    raise ValueError(f'utterance id {uid!r} is not <dialog>_..._<speaker>')
  return 'L' if parts[0][-1] == parts[-1][0] else 'R'


def _load_hcf_dict(path: Path) -> Mapping:
  if not path.is_file():
    raise FileNotFoundError(
        f'no {path.name} in {path.parent} (the IEMOCAP HCF layout has '
        '{train,valid,test}_{text,audio,video}_features.pt)')
  data = _unpickle(path)
  if not isinstance(data, Mapping):
    raise FeatureFileError(f'{path}: expected a dict keyed by utterance id, '
                           f'got {type(data).__name__}')
  return {_as_str(k): v for k, v in data.items()}


def _unpickle(path: Path):
  """The object pickled in ``path``; FeatureFileError if it cannot be read."""
  try:
    with open(path, 'rb') as f:
      return pickle.load(f)
  except (pickle.UnpicklingError, EOFError, AttributeError, ImportError,
          ValueError) as e:
    raise FeatureFileError(f'{path}: cannot unpickle: {e}') from e


def _finite(x: np.ndarray) -> np.ndarray:
  return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _float_array(value, path: Path, where: str, what: str) -> np.ndarray:
  """``value`` as float32, or FeatureFileError naming the file and place."""
  try:
    return np.asarray(value, np.float32)
  except (TypeError, ValueError) as e:
    raise FeatureFileError(f'{path}: {where}: not {what}: {e}') from e


def _hcf_text(path: Path, uid: str, value) -> np.ndarray:
  x = _float_array(value, path, f'utterance {uid!r}',
                   'word vectors, an [L, D] array')
  if x.size == 0:
    return np.zeros((0, HCF_TEXT_DIM), np.float32)
  if x.ndim != 2:
    raise FeatureFileError(f'{path}: utterance {uid!r}: word vectors have '
                           f'shape {x.shape}, expected [L, D]')
  return _finite(x)


def _hcf_audio(path: Path, uid: str, side: str, value) -> np.ndarray:
  if not isinstance(value, Mapping) or side not in value:
    keys = sorted(map(str, value)) if isinstance(value, Mapping) else (
        type(value).__name__)
    raise FeatureFileError(f'{path}: utterance {uid!r}: expected a dict with '
                           f'its side {side!r} (L / R), got {keys}')
  x = _float_array(value[side], path, f'utterance {uid!r} side {side!r}',
                   'a [D, T] array')
  if x.ndim != 2 or x.shape[0] < HCF_MIN_AUDIO_ROWS:
    raise FeatureFileError(
        f'{path}: utterance {uid!r} side {side!r}: shape {x.shape}, expected '
        f'[D, T] (features x frames) with D >= {HCF_MIN_AUDIO_ROWS} (DisVoice)')
  return _finite(np.ascontiguousarray(x[HCF_AUDIO_ROWS].T))


def _hcf_vision(path: Path, uid: str, side: str, value) -> np.ndarray:
  if not isinstance(value, Mapping):
    raise FeatureFileError(f'{path}: utterance {uid!r}: expected a dict '
                           f'image_<L|R>_<i> -> OpenFace vector, got '
                           f'{type(value).__name__}')
  rows = []
  for i in range(len(value) // 2):
    key = f'image_{side}_{i}'
    if key not in value:
      continue
    vec = _float_array(value[key], path, f'utterance {uid!r} key {key!r}',
                       'a vector')
    if vec.ndim != 1 or vec.shape[0] < HCF_VISION_DIM:
      raise FeatureFileError(
          f'{path}: utterance {uid!r} key {key!r}: shape {vec.shape}, '
          f'expected one OpenFace vector of >= {HCF_VISION_DIM} values')
    rows.append(vec[-HCF_VISION_DIM:])
  if not rows:
    return np.zeros((0, HCF_VISION_DIM), np.float32)
  return _finite(np.stack(rows))


def _read_hcf_phase(folder: Path, phase: str
                    ) -> tuple[dict[str, dict[str, np.ndarray]],
                               list[tuple[str, str, tuple[str, ...]]]]:
  paths = {m: hcf_file(folder, phase, m) for m in MODALITIES}
  tables = {m: _load_hcf_dict(p) for m, p in paths.items()}
  all_ids = list(dict.fromkeys(uid for t in tables.values() for uid in t))
  out, incomplete = {}, []
  for uid in all_ids:
    lacking = tuple(paths[m].name for m in MODALITIES if uid not in tables[m])
    if lacking:
      incomplete.append((phase, uid, lacking))
      continue
    try:
      side = hcf_side(uid)
    except ValueError as e:
      raise FeatureFileError(f'{paths["audio"]}: {e}') from e
    out[uid] = {
        'text': _hcf_text(paths['text'], uid, tables['text'][uid]),
        'audio': _hcf_audio(paths['audio'], uid, side, tables['audio'][uid]),
        'vision': _hcf_vision(paths['vision'], uid, side,
                              tables['vision'][uid])}
  return out, incomplete


def read_iemocap_hcf_report(folder: str | Path, split: str | None = None
                            ) -> IemocapHcf:
  """Reads the MESM authors' IEMOCAP feature folder (module docstring).

  Args:
    folder: the folder of ``{phase}_{text,audio,video}_features.pt``.
    split: one phase (``'train'``, ``'valid'``, ``'test'``), or None: the
      three merged (an id in two phases is an error).

  Returns:
    ``IemocapHcf``: clip id -> ``{'text': [Lt, 300], 'audio': [La, 144],
    'vision': [Lv, 35]}`` float32 (phase order, then the text file's order;
    a modality may have no row), and the utterances left out because one or
    two of their phase's files lack them.

  Raises:
    FileNotFoundError: no such folder, or a file of a phase read is missing.
    FeatureFileError: a file or value has another layout or shape (the
      message names the file and the utterance).
  """
  folder = Path(folder).expanduser()
  if not folder.is_dir():
    raise FileNotFoundError(f'no IEMOCAP HCF feature folder {folder}')
  if split is not None and split not in HCF_PHASES:
    raise ValueError(f'split must be one of {HCF_PHASES} or None, got '
                     f'{split!r}')
  out, incomplete = {}, []
  for phase in (split,) if split else HCF_PHASES:
    feats, lacking = _read_hcf_phase(folder, phase)
    for uid, f in feats.items():
      if uid in out:
        raise FeatureFileError(
            f'{hcf_file(folder, phase, "text")}: utterance {uid!r} is also in '
            'another phase; pass split=')
      out[uid] = f
    incomplete += lacking
  return IemocapHcf(out, incomplete)


def read_iemocap_hcf(folder: str | Path, split: str | None = None
                     ) -> dict[str, dict[str, np.ndarray]]:
  """``read_iemocap_hcf_report``'s features; the utterances it leaves out
  (in some but not all of their phase's files) are logged as a warning."""
  read = read_iemocap_hcf_report(folder, split)
  if read.incomplete:
    shown = '; '.join(f'{phase} {uid} (not in {", ".join(files)})'
                      for phase, uid, files in read.incomplete[:10])
    more = len(read.incomplete) - 10
    logging.warning('%s: %d utterances left out, not in all three files of '
                    'their phase: %s%s', folder, len(read.incomplete), shown,
                    f'; and {more} more' if more > 0 else '')
  return read.features


def join_with_split(features: Mapping[str, dict], split_ids: Sequence[str]
                    ) -> tuple[dict[str, dict], list[str]]:
  """The features of a split's clips, in split order, and the ids lacking.

  Args:
    features: clip id -> features (``read_feature_pickle``).
    split_ids: this project's ids of one split (``readers.read_split_ids``).

  Returns:
    (clip id -> features for the ids found, in ``split_ids`` order; the ids
    of ``split_ids`` that ``features`` lacks, in order).
  """
  found, missing = {}, []
  for clip_id in dict.fromkeys(split_ids):
    if clip_id in features:
      found[clip_id] = features[clip_id]
    else:
      missing.append(clip_id)
  return found, missing


def _format_id(clip_id: str, id_style: str):
  video, _, clip = clip_id.rpartition('_')
  if id_style == 'project' or not video:
    return clip_id
  if id_style == 'mmsa':
    return f'{video}$_${clip}'
  if id_style == 'sdk':
    return f'{video}[{clip}]'
  if id_style == 'row':
    return [video.encode(), clip.encode(), b'']
  raise ValueError(f"id_style must be 'project', 'mmsa', 'sdk' or 'row', got "
                   f'{id_style!r}')


def _pad_stack(clips: list[np.ndarray], pad_side: str) -> np.ndarray:
  width = {c.shape[1] for c in clips}
  if len(width) != 1:
    raise ValueError(f'clips of one modality have different widths {width}')
  max_len = max([c.shape[0] for c in clips] + [1])
  out = np.zeros((len(clips), max_len, width.pop()), np.float32)
  for i, c in enumerate(clips):
    if pad_side == 'front':
      out[i, max_len - c.shape[0]:] = c
    else:
      out[i, :c.shape[0]] = c
  return out


def _split_table(feats: Mapping[str, dict], id_style: str, pad_side: str,
                 with_lengths: bool, labels: Mapping | None) -> dict:
  ids = list(feats)
  table = {ID_KEY: np.asarray([_format_id(i, id_style) for i in ids])}
  for key in MODALITIES:
    clips = [np.asarray(feats[i][key], np.float32) for i in ids]
    table[key] = _pad_stack(clips, pad_side)
    if with_lengths and key != 'text':
      table[f'{key}_lengths'] = [c.shape[0] for c in clips]
  if labels is not None:
    table['labels'] = np.stack([np.asarray(labels[i], np.float32)
                                for i in ids])
  return table


def write_feature_pickle(path: str | Path, splits: Mapping[str, Mapping],
                         *, single_split: bool = False, id_style: str = 'mmsa',
                         pad_side: str = 'end', with_lengths: bool = False,
                         labels: Mapping | None = None) -> Path:
  """Writes features in the MulT / MMSA layout (for tests and demos).

  Args:
    path: the pickle to write.
    splits: split -> clip id -> ``{'text', 'audio', 'vision'}`` arrays; with
      ``single_split``, clip id -> arrays (one split per file, as MESM).
    single_split: write ``{id, text, audio, vision}`` at the top level.
    id_style: ``'mmsa'`` (``video$_$clip``), ``'sdk'`` (``video[clip]``),
      ``'row'`` (``[N, 3]`` bytes rows ``[video, clip, b'']``) or
      ``'project'`` (``video_clip``).
    pad_side: ``'end'`` or ``'front'``: where the zero padding goes.
    with_lengths: add MMSA's ``audio_lengths`` and ``vision_lengths``.
    labels: clip id -> label vector, written as ``labels`` [N, E].

  Returns:
    ``path``.
  """
  if pad_side not in ('end', 'front'):
    raise ValueError(f"pad_side must be 'end' or 'front', got {pad_side!r}")
  path = Path(path)
  if single_split:
    data = _split_table(splits, id_style, pad_side, with_lengths, labels)
  else:
    data = {name: _split_table(feats, id_style, pad_side, with_lengths, labels)
            for name, feats in splits.items()}
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'wb') as f:
    pickle.dump(data, f, protocol=4)
  return path
