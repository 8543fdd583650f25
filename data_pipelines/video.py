"""Video frames: sampled every ``img_interval`` ms from the video itself.

Frames are read with OpenCV, one every ``img_interval`` ms of the clip
(clip-relative times 0, interval, 2*interval, ... below the clip's end); the
frame shown at time t is frame ``round(t * fps)`` of the file.  Frames are RGB
uint8 [H, W, 3].  Dataset rules (MESM.md, "Inputs"):

* MOSEI: a frame higher than 360 px is halved, then the centre 360x360 (or
  less where the frame is smaller) is cut out before face detection.
* IEMOCAP: the left or right half of the side-by-side dialog frame.
* The original cuts videos at 280 s: at most ``MAX_SECONDS`` of a clip are
  sampled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

MAX_SECONDS = 280.0
DEFAULT_FPS = 30.0          # what the original assumes when a file has none
MOSEI_MAX_HEIGHT = 360


class VideoError(ValueError):
  """A video that cannot be used (unreadable, or no frame in the clip)."""


def sample_times(start: float, end: float | None, img_interval: int,
                 duration: float | None = None) -> np.ndarray:
  """Clip-relative sample times (s): 0, dt, 2 dt, ... < min(len, 280 s)."""
  dt = img_interval / 1000.0
  length = (end - start) if end is not None else duration
  if length is None:
    raise ValueError('need the clip end or the video duration')
  length = min(length, MAX_SECONDS)
  n = max(0, math.ceil(length / dt - 1e-9))
  return np.arange(n) * dt


def _open(path: str | Path) -> cv2.VideoCapture:
  if not Path(path).is_file():
    raise VideoError(f'video file not found: {path}')
  cap = cv2.VideoCapture(str(path))
  if not cap.isOpened():
    raise VideoError(f'OpenCV cannot open video {path}')
  return cap


def _fps(cap: cv2.VideoCapture) -> float:
  fps = cap.get(cv2.CAP_PROP_FPS)
  return fps if fps and math.isfinite(fps) and fps > 0 else DEFAULT_FPS


def read_frames(path: str | Path, *, start: float = 0.0,
                end: float | None = None,
                img_interval: int = 500) -> list[np.ndarray]:
  """RGB frames [H, W, 3] of ``path`` at ``start + k * img_interval`` ms.

  ``end=None`` reads to the end of the file.  Raises VideoError when the file
  cannot be opened or no frame of the clip can be decoded.
  """
  cap = _open(path)
  try:
    fps = _fps(cap)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    duration = count / fps if count and count > 0 else None
    if end is None and duration is None:
      end = start + MAX_SECONDS
    times = sample_times(start, end, img_interval,
                         None if duration is None else duration - start)
    wanted = sorted({int(round((start + t) * fps)) for t in times})
    frames = _decode_indices(cap, wanted)
  finally:
    cap.release()
  if not frames:
    raise VideoError(f'{path}: no decodable frame in [{start}, {end}) s')
  return frames


def _decode_indices(cap: cv2.VideoCapture,
                    indices: Sequence[int]) -> list[np.ndarray]:
  """Decodes the frames at sorted ``indices``: one seek, then sequential."""
  frames = []
  if not indices:
    return frames
  cap.set(cv2.CAP_PROP_POS_FRAMES, indices[0])
  pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
  if pos != indices[0]:          # inexact seek: rewind and walk
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    pos = 0
  for idx in indices:
    while pos < idx:
      if not cap.grab():
        return frames
      pos += 1
    ok, frame = cap.read()
    if not ok or frame is None:
      return frames
    pos += 1
    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
  return frames


def mosei_frame(frame: np.ndarray) -> np.ndarray:
  """MOSEI rule: halve frames higher than 360 px, then centre-crop 360x360."""
  h, w = frame.shape[:2]
  if h > MOSEI_MAX_HEIGHT:
    frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    h, w = frame.shape[:2]
  ch, cw = min(h, MOSEI_MAX_HEIGHT), min(w, MOSEI_MAX_HEIGHT)
  top, left = (h - ch) // 2, (w - cw) // 2
  return frame[top:top + ch, left:left + cw]


def half_frame(frame: np.ndarray, side: str) -> np.ndarray:
  """IEMOCAP: the 'left' or 'right' half of a side-by-side dialog frame."""
  w = frame.shape[1]
  if side == 'left':
    return frame[:, :w // 2]
  if side == 'right':
    return frame[:, w // 2:]
  raise ValueError(f'side must be left or right, got {side!r}')


def read_image(path: str | Path) -> np.ndarray:
  """An RGB jpg of the authors' processed layout."""
  img = cv2.imread(str(path), cv2.IMREAD_COLOR)
  if img is None:
    raise VideoError(f'cannot read image {path}')
  return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
