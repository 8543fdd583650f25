"""What every dataset reader shares: clips, skips, split files, meta.pkl."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np

DATASETS = ('mosei', 'iemocap', 'manifest')
SPLITS = ('train', 'valid', 'test')
SHIPPED_SPLITS = Path(__file__).resolve().parent.parent / 'splits'


@dataclasses.dataclass
class Clip:
  """Where one utterance's inputs are, and its text and labels."""
  clip_id: str
  dataset: str                       # 'mosei' | 'iemocap' | 'manifest'
  layout: str                        # 'raw' | 'processed'
  text: str
  labels: np.ndarray                 # float32 [E], multi-hot
  # The wav; None or '': the audio track of ``video_path`` (manifest rows
  # without an audio file).
  audio_path: str | None = None
  video_path: str | None = None      # raw layout: the (dialog) video
  image_paths: tuple[str, ...] = ()  # processed layout: frames, in order
  start: float | None = None         # seconds in the video / wav (raw)
  end: float | None = None
  side: str | None = None            # IEMOCAP raw: 'left' | 'right' half
  channel: int | None = None         # IEMOCAP raw: audio channel (0 = left)


@dataclasses.dataclass
class Skip:
  """A clip of the split that cannot be used."""
  clip_id: str
  reason: str
  file: str = ''
  detail: str = ''


@dataclasses.dataclass
class SplitClips:
  """What a reader found for one split, in split-file order."""
  clips: list[Clip]
  skipped: list[Skip]
  missing: list[str]                 # ids in the split file absent from data
  layout: str
  root: str


def split_file(dataset: str, split: str,
               splits_dir: str | Path | None = None) -> Path:
  """``splits_dir/<split>.txt`` or ``splits_dir/<dataset>/<split>.txt``."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  base = Path(splits_dir) if splits_dir else SHIPPED_SPLITS / dataset
  for path in (base / f'{split}.txt', base / dataset / f'{split}.txt'):
    if path.is_file():
      return path
  raise FileNotFoundError(f'no split file {split}.txt in {base} (or '
                          f'{base / dataset})')


def read_split_ids(dataset: str, split: str,
                   splits_dir: str | Path | None = None) -> list[str]:
  """Clip ids of a split file, one a line, order kept, duplicates dropped."""
  lines = split_file(dataset, split, splits_dir).read_text().splitlines()
  return list(dict.fromkeys(s.strip() for s in lines if s.strip()))


def assemble(ids: list[str], found: dict[str, Clip | Skip], layout: str,
             root: Path) -> SplitClips:
  """Sorts what a reader found into clips / skipped / missing, in id order."""
  clips, skipped, missing = [], [], []
  for clip_id in ids:
    item = found.get(clip_id)
    if item is None:
      missing.append(clip_id)
    elif isinstance(item, Skip):
      skipped.append(item)
    else:
      clips.append(item)
  return SplitClips(clips, skipped, missing, layout, str(root))


def processed_labels(label, classes: tuple[str, ...]) -> np.ndarray | None:
  """A meta.pkl label (class name, index, one-hot or score vector) -> [6]."""
  out = np.zeros(len(classes), np.float32)
  if isinstance(label, (str, bytes)):
    name = label.decode() if isinstance(label, bytes) else label
    if name not in classes:
      return None
    out[classes.index(name)] = 1.0
    return out
  if isinstance(label, (int, np.integer)):
    if not 0 <= int(label) < len(classes):
      return None
    out[int(label)] = 1.0
    return out
  try:
    vec = np.asarray(label, np.float64).reshape(-1)
  except (TypeError, ValueError):
    return None
  if vec.shape != (len(classes),) or not np.all(np.isfinite(vec)):
    return None
  return (vec > 0).astype(np.float32)


def find_processed(raw_dir: Path, dirname: str) -> Path | None:
  """The authors' processed folder in ``raw_dir``, or None.

  It is ``raw_dir/<dirname>``, or ``raw_dir`` itself when it has that name or
  holds a ``meta.pkl``.
  """
  for cand in (raw_dir / dirname, raw_dir):
    if cand.name == dirname and cand.is_dir():
      return cand
  return raw_dir if (raw_dir / 'meta.pkl').is_file() else None


def load_meta(root: Path) -> dict:
  """The authors' ``meta.pkl`` (in the processed folder or next to it)."""
  for path in (root / 'meta.pkl', root.parent / 'meta.pkl'):
    if path.is_file():
      with open(path, 'rb') as f:
        meta = pickle.load(f)
      if not isinstance(meta, dict):
        raise ValueError(f'{path}: expected a dict clip id -> {{text, label}}')
      return meta
  raise FileNotFoundError(f'no meta.pkl in {root} or {root.parent}')


def image_index(path: Path) -> int:
  """The frame number i of ``image_<i>.jpg`` / ``image_L_<i>.jpg``."""
  stem = path.stem.rsplit('_', 1)[-1]
  return int(stem) if stem.isdigit() else -1


def processed_images(folder: Path, prefix: str) -> tuple[str, ...]:
  """All frames ``<prefix><i>.jpg`` of a clip folder, in frame order.

  The authors' folders hold one frame per 500 ms already (quirk 4); the
  preprocessing keeps every (img_interval / 500)-th of them.
  """
  paths = sorted(folder.glob(f'{prefix}*.jpg'), key=image_index)
  return tuple(str(p) for p in paths if image_index(p) >= 0)


def meta_entry(meta: dict, clip_id: str) -> tuple[str | None, object]:
  """(text, label) of a meta.pkl entry (dict, or (text, label) pair)."""
  entry = meta[clip_id]
  if isinstance(entry, dict):
    text = entry.get('text', entry.get('sentence'))
    label = entry.get('label', entry.get('labels'))
    return text, label
  if isinstance(entry, (tuple, list)) and len(entry) >= 2:
    return entry[0], entry[1]
  return None, None
