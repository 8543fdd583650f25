"""Video frames: sampled every ``img_interval`` ms from the video itself.

Frames are read one every ``img_interval`` ms of the clip
(clip-relative times 0, interval, 2*interval, ... below the clip's end); the
frame shown at time t is frame ``round(t * fps)`` of the file.  Frames are RGB
uint8 [H, W, 3].  Dataset rules (MESM.md, "Inputs"):

* MOSEI: a frame higher than 360 px is halved, then the centre 360x360 (or
  less where the frame is smaller) is cut out before face detection.
* IEMOCAP: the left or right half of the side-by-side dialog frame.
* The original cuts videos at 280 s: at most ``MAX_SECONDS`` of a clip are
  sampled.

Decoding (``read_frames``): the sample times and frame numbers come from
OpenCV's view of the file (fps, frame count), as they always did.  The frames
are then decoded with PyAV (``decoder='pyav'``, the default), which decodes
only what the sampled frames need: it seeks to the key frame before the
first one, and asks FFmpeg to skip every non-reference frame that is not
sampled (no other frame depends on those, so the sampled frames come out
bit-identical); only the sampled frames are converted to RGB, with the same
swscale conversion as OpenCV's (bicubic; RGB24 here, BGR24 then BGR->RGB
there: the same bytes, tests/test_video.py).  OpenCV and PyAV bundle their
own FFmpeg builds, so the first clip of each codec and pixel format in a
process is also decoded with OpenCV and compared; a difference turns PyAV
off for that codec and format in the process (with a warning).  A file PyAV cannot read, or whose
time stamps are not one frame apart (variable frame rate), is read with
OpenCV (``decoder='opencv'``: seek, then ``grab`` every frame and
``retrieve`` the sampled ones), the code before the fast path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from absl import logging
import cv2
import numpy as np

MAX_SECONDS = 280.0
DEFAULT_FPS = 30.0          # what the original assumes when a file has none
MOSEI_MAX_HEIGHT = 360
DECODERS = ('pyav', 'opencv')
# Packets read past the last sampled frame (B-frames arrive out of order).
_REORDER_MARGIN = 32


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
                end: float | None = None, img_interval: int = 500,
                decoder: str = 'pyav') -> list[np.ndarray]:
  """RGB frames [H, W, 3] of ``path`` at ``start + k * img_interval`` ms.

  ``end=None`` reads to the end of the file.  ``decoder``: 'pyav' (fast,
  falls back to OpenCV where it cannot be exact) or 'opencv' (the code
  before the fast path).  Raises VideoError when the file cannot be opened
  or no frame of the clip can be decoded.
  """
  if decoder not in DECODERS:
    raise ValueError(f'decoder must be one of {DECODERS}, got {decoder!r}')
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
    frames = None
    if decoder == 'pyav' and wanted:
      cap.release()
      frames, pix_fmt = _pyav_decode_indices(path, wanted, fps)
      if not _PYAV_AGREES.get(pix_fmt, True):
        frames = None
      if frames is None or pix_fmt not in _PYAV_AGREES:
        cap = _open(path)
        if frames is not None and not _pyav_agrees(cap, wanted, frames,
                                                   pix_fmt, path):
          frames = None
    if frames is None:        # the OpenCV path (not exact with PyAV)
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


_REFORMATTER = None


def _reformatter():
  """One swscale context cache per process (a new one costs ~3 ms a frame)."""
  global _REFORMATTER
  if _REFORMATTER is None:
    from av.video.reformatter import VideoReformatter  # pylint: disable=g-import-not-at-top
    _REFORMATTER = VideoReformatter()
  return _REFORMATTER


# 'codec/pixel format' -> PyAV's first frame equalled OpenCV's in this
# process (MPEG-4 part 2's IDCT is not bit-exact across FFmpeg builds; the
# RGB conversion depends on the pixel format).
_PYAV_AGREES: dict[str, bool] = {}


def _pyav_agrees(cap: cv2.VideoCapture, indices: Sequence[int],
                 frames: list[np.ndarray], pix_fmt: str, path) -> bool:
  """Once per codec, pixel format and process: PyAV's first frame ==
  OpenCV's."""
  if pix_fmt not in _PYAV_AGREES:
    ref = _decode_indices(cap, indices[:1])
    same = bool(ref) and np.array_equal(ref[0], frames[0])
    _PYAV_AGREES[pix_fmt] = same
    if not same:
      logging.warning('PyAV and OpenCV decode %s (%s) to different pixels: '
                      'decoding %s videos with OpenCV in this process',
                      path, pix_fmt, pix_fmt)
  return _PYAV_AGREES[pix_fmt]


def _pyav_decode_indices(path: str | Path, indices: Sequence[int], fps: float
                         ) -> tuple[list[np.ndarray] | None, str]:
  """(frames at sorted ``indices`` (frame n shown at n / fps) or None,
  'codec/pixel format').

  None: PyAV cannot open or decode the file, its packets are not exactly
  one 1/fps apart (then frame numbers by time and by count could differ),
  or a sampled frame did not come out (a truncated file, several frames in
  one packet): the caller then reads the file with OpenCV, which counts.
  """
  import av  # pylint: disable=g-import-not-at-top
  try:
    container = av.open(str(path))
  except (av.FFmpegError, OSError):
    return None, ''
  pix_fmt = ''
  try:
    if not container.streams.video:
      return None, pix_fmt
    stream = container.streams.video[0]
    stream.thread_type = 'NONE'     # one thread: skip_frame is per packet
    ctx = stream.codec_context
    pix_fmt = f'{ctx.name}/{ctx.pix_fmt}'
    if not _PYAV_AGREES.get(pix_fmt, True):
      return None, pix_fmt
    tb = float(stream.time_base)
    t0 = stream.start_time or 0
    wanted = set(indices)
    last = indices[-1]

    def number(pts: int) -> int:      # OpenCV's dts_to_frame_number
      return int(math.floor((pts - t0) * tb * fps + 0.5))

    if indices[0] > 0:
      target = int(round(indices[0] / fps / tb)) + t0
      container.seek(target, backward=True, any_frame=False, stream=stream)
    out: dict[int, np.ndarray] = {}
    seen: list[int] = []
    for packet in container.demux(stream):
      if packet.pts is not None:
        n = number(packet.pts)
        seen.append(n)
        if n > last + _REORDER_MARGIN:
          break
        if len(out) == len(wanted):   # only the time stamps are still read
          continue
        # Not sampled: FFmpeg drops it if no other frame refers to it.
        ctx.skip_frame = 'DEFAULT' if n in wanted else 'NONREF'
      else:
        ctx.skip_frame = 'DEFAULT'
      for frame in packet.decode():
        if frame.pts is None:
          return None, pix_fmt
        pix_fmt = f'{ctx.name}/{frame.format.name}'
        n = number(frame.pts)
        if n in wanted and n not in out:
          out[n] = _reformatter().reformat(
              frame, format='rgb24', interpolation='BICUBIC').to_ndarray()
  except (av.FFmpegError, OSError, ValueError):
    return None, pix_fmt
  finally:
    container.close()
  # Exactness check: packet times one frame apart from the seek point on.
  seen = sorted(n for n in set(seen) if n <= last)
  if (not seen or seen[0] > indices[0] or
      seen != list(range(seen[0], seen[0] + len(seen)))):
    return None, pix_fmt
  if len(out) != len(wanted):   # a truncated or packed file: OpenCV decides
    return None, pix_fmt
  return [np.ascontiguousarray(out[idx]) for idx in indices], pix_fmt


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
