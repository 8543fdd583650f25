"""48x48 RGB face crops: MTCNN with margin 2, centre crop where none is found.

MESM.md: a face crop of 48x48 RGB is cut from each frame with MTCNN (margin 2,
pixel values kept in 0..255); where no face is found the centre of the frame
is used.  The detector is the ``mtcnn`` package (TensorFlow).  The crop rule
is the usual one of MTCNN face extractors: take the largest detected box, widen
it by ``margin`` pixels *of the output image* (``margin * box / (size -
margin)`` pixels of the frame, half on each side), clip it to the frame and
resize it to 48x48 with area interpolation.

The centre crop (fallback, and the whole ``'center'`` detector) is the centre
square of side min(H, W), resized to 48x48.  MESM.md does not spell out the
original's size; this is our rule (documented in docs/data.md).

One MTCNN is built per process (lazily, on first use) and reused for every
frame; ``mtcnn_constructions`` counts how often that happened in this process.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

FACE_SIZE = 48
MARGIN = 2
DETECTORS = ('mtcnn', 'center')

_MTCNN = None
mtcnn_constructions = 0
_tf_threads: int | None = None


def set_tf_threads(n: int | None) -> None:
  """Threads for TensorFlow in this process (call before the first MTCNN)."""
  global _tf_threads
  _tf_threads = n


def get_mtcnn():
  """The process-wide MTCNN detector (built on first call)."""
  global _MTCNN, mtcnn_constructions
  if _MTCNN is None:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if _tf_threads:
      try:
        tf.config.threading.set_intra_op_parallelism_threads(_tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(_tf_threads)
      except RuntimeError:   # TF already initialised in this process
        pass
    from mtcnn import MTCNN  # pylint: disable=g-import-not-at-top
    _MTCNN = MTCNN(stages='face_and_landmarks_detection')
    mtcnn_constructions += 1
  return _MTCNN


def center_crop(frame: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
  """Centre square of side min(H, W) resized to size x size: [size, size, 3]."""
  h, w = frame.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  square = frame[top:top + side, left:left + side]
  return _resize(square, size)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
  interp = cv2.INTER_AREA if min(img.shape[:2]) >= size else cv2.INTER_LINEAR
  return cv2.resize(img, (size, size), interpolation=interp)


def margin_box(box_xyxy: Sequence[float], frame_shape: Sequence[int],
               size: int = FACE_SIZE, margin: int = MARGIN) -> tuple[int, ...]:
  """Widens a detected box by ``margin`` output pixels, clipped to the frame."""
  x1, y1, x2, y2 = box_xyxy
  h, w = frame_shape[:2]
  mx = margin * (x2 - x1) / (size - margin)
  my = margin * (y2 - y1) / (size - margin)
  return (int(max(x1 - mx / 2, 0)), int(max(y1 - my / 2, 0)),
          int(min(x2 + mx / 2, w)), int(min(y2 + my / 2, h)))


def crop_box(frame: np.ndarray, box_xyxy: Sequence[float],
             size: int = FACE_SIZE, margin: int = MARGIN) -> np.ndarray:
  """The size x size crop of a detected face box (with margin)."""
  x1, y1, x2, y2 = margin_box(box_xyxy, frame.shape, size, margin)
  if x2 - x1 < 2 or y2 - y1 < 2:
    return center_crop(frame, size)
  return _resize(frame[y1:y2, x1:x2], size)


def largest_box(detections: list[dict]) -> tuple[float, ...] | None:
  """xyxy of the largest detected face, or None."""
  best, best_area = None, 0.0
  for det in detections or []:
    x, y, bw, bh = det['box']
    if bw * bh > best_area:
      best, best_area = (x, y, x + bw, y + bh), bw * bh
  return best


def detect_boxes(frames: Sequence[np.ndarray]) -> list[tuple | None]:
  """Largest MTCNN box (xyxy) per RGB frame, None where no face is found."""
  if not frames:
    return []
  detector = get_mtcnn()
  shapes = {f.shape for f in frames}
  if len(shapes) == 1:
    results = detector.detect_faces(list(frames), box_format='xywh')
  else:
    results = [detector.detect_faces(f, box_format='xywh') for f in frames]
  return [largest_box(r) for r in results]


def face_crops(frames: Sequence[np.ndarray],
               detector: str = 'mtcnn') -> tuple[np.ndarray, int]:
  """RGB frames -> (uint8 crops [F, 48, 48, 3], number of centre fallbacks)."""
  if detector not in DETECTORS:
    raise ValueError(f'face detector must be one of {DETECTORS}, got '
                     f'{detector!r}')
  frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
  boxes = detect_boxes(frames) if detector == 'mtcnn' else [None] * len(frames)
  crops, fallbacks = [], 0
  for frame, box in zip(frames, boxes):
    if box is None:
      crops.append(center_crop(frame))
      fallbacks += 1
    else:
      crops.append(crop_box(frame, box))
  out = np.stack(crops).astype(np.uint8) if crops else np.zeros(
      (0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
  return out, (fallbacks if detector == 'mtcnn' else len(frames))
