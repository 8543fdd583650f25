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

import functools
import math
from typing import Sequence

import cv2
import numpy as np

FACE_SIZE = 48
MARGIN = 2
DETECTORS = ('mtcnn', 'center')
# Frames per detector call: measured fastest on CPU (docs/benchmarks.md).
BATCH_SIZE = 16
# The mtcnn package's P-Net pyramid defaults (the crops of the original).
MIN_FACE_SIZE = 20
SCALE_FACTOR = 0.709

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


def detect_boxes_reference(frames: Sequence[np.ndarray],
                           **detector_kwargs) -> list[tuple | None]:
  """The original call: the package's ``detect_faces`` on all frames at once.

  Kept for ``--compare`` in experiments/perf/preprocess_benchmark.py and for the
  tests that check ``detect_boxes`` against it.
  """
  if not frames:
    return []
  detector = get_mtcnn()
  shapes = {f.shape for f in frames}
  if len(shapes) == 1:
    results = detector.detect_faces(list(frames), box_format='xywh',
                                    **detector_kwargs)
  else:
    results = [detector.detect_faces(f, box_format='xywh', **detector_kwargs)
               for f in frames]
  return [largest_box(r) for r in results]


def pyramid_scales(width: int, height: int, min_face_size: int = MIN_FACE_SIZE,
                   scale_factor: float = SCALE_FACTOR) -> np.ndarray:
  """Image-pyramid scales of P-Net.

  The default ``min_face_size`` keeps the package's own rule (the crops of
  the original code).  The package counts its levels as if
  ``min_face_size`` were 20 whatever it is, so with a larger one its smallest
  levels fall under P-Net's 12 px and the whole batch finds no face; any
  other value therefore uses the standard MTCNN rule: levels ``12 /
  min_face_size * scale_factor**k`` while the shorter side stays >= 12 px.
  Opt-in: fewer, smaller levels are faster but move the boxes (measured in
  docs/benchmarks.md, "Preprocessing").
  """
  from mtcnn.utils import images as mi  # pylint: disable=g-import-not-at-top
  if min_face_size == MIN_FACE_SIZE:
    return mi.build_scale_pyramid(width, height, min_face_size=min_face_size,
                                  scale_factor=scale_factor)
  m = 12 / min_face_size
  side = min(width, height) * m
  count = max(1, int(math.floor(math.log(12 / side) / math.log(scale_factor)))
              + 1) if side >= 12 else 1
  return m * scale_factor ** np.arange(count)


class FastMTCNN:
  """The ``mtcnn`` package's three stages with the Python overhead taken out.

  Same weights, same operations and the same numpy post-processing as
  ``MTCNN.detect_faces`` (the package's own helpers are called), but

  * the normalised batch is turned into a tensor once, not once per pyramid
    level and stage (the package converts its float64 numpy array 11 times),
    and in float32 (exact for these values; the resize and crop kernels
    compute in float32 anyway);
  * the three Keras models run as ``tf.function`` graphs (one trace each,
    any batch and image size) instead of eager layer-by-layer calls.

  The boxes are bit-identical to ``detect_faces`` (tests/test_faces.py and the
  benchmark's ``--compare`` check this).  Where no proposal is left after
  P-Net or R-Net, no frame of the batch has a face (the package gets there
  through an error it catches); any other TensorFlow error falls back to the
  package's own call.  Written against ``mtcnn`` 1.0 (its stage order and
  helpers); ``detect_boxes`` uses the package's call with other versions.
  """

  def __init__(self, mtcnn):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.mtcnn = mtcnn
    self.pnet, self.rnet, self.onet = mtcnn.stages
    spec = [tf.TensorSpec([None, None, None, 3], tf.float32)]
    self._models = [tf.function(stage._model.call, input_signature=spec)  # pylint: disable=protected-access
                    for stage in mtcnn.stages]

  def detect(self, frames: Sequence[np.ndarray],
             min_face_size: int = MIN_FACE_SIZE,
             scale_factor: float = SCALE_FACTOR) -> list[list[dict]]:
    """``detect_faces(list(frames), box_format='xywh')`` of same-shape frames."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    try:
      return self._detect(tf, frames, min_face_size, scale_factor)
    except (tf.errors.InvalidArgumentError, ValueError):
      return self.mtcnn.detect_faces(list(frames), box_format='xywh',
                                     min_face_size=min_face_size,
                                     scale_factor=scale_factor)

  def _detect(self, tf, frames, min_face_size, scale_factor):
    from mtcnn.utils import bboxes as mb  # pylint: disable=g-import-not-at-top
    from mtcnn.utils import images as mi  # pylint: disable=g-import-not-at-top
    from mtcnn.utils.landmarks import adjust_landmarks  # pylint: disable=g-import-not-at-top
    pnet, rnet, onet = self._models
    stacked, oshapes, pad = mi.pad_stack_np(list(frames))
    # The package normalises in float64; (x - 127.5) / 128 of a uint8 is
    # exact in float32 too, and TF's area resize and crop_and_resize compute
    # in float32 either way: the same numbers, half the memory traffic.
    images = tf.convert_to_tensor(
        (stacked.astype(np.float32) - np.float32(127.5)) / np.float32(128))
    n = stacked.shape[0]
    scales = pyramid_scales(oshapes[0][1], oshapes[0][0], min_face_size,
                            scale_factor)
    # Stage 1 (StagePNet.__call__ with its default thresholds).
    proposals = []
    for scale in scales:
      reg, cls = pnet(tf.cast(mi.scale_images(images, scale), tf.float32))
      b = mb.generate_bounding_box(reg, cls, 0.6)
      b = mb.upscale_bboxes(b, np.asarray([scale] * n))
      proposals.append(mb.smart_nms_from_bboxes(b, threshold=0.5,
                                                method='union',
                                                initial_sort=False))
    b = (np.concatenate(proposals, axis=0) if proposals else
         np.empty((0, 6)))
    b = mb.smart_nms_from_bboxes(b, threshold=0.7, method='union',
                                 initial_sort=True)
    b = mb.resize_to_square(b)
    if not len(b):     # the package: an error in R-Net, caught: no face
      return [[] for _ in range(n)]
    # Stage 2 (StageRNet.__call__).
    off, scores = rnet(mi.extract_patches(images, b, expected_size=(24, 24)))
    b = mb.replace_confidence(b, scores)
    b = mb.adjust_bboxes(b, off)
    b = mb.pick_matches(b, score_threshold=0.7)
    b = mb.smart_nms_from_bboxes(b, threshold=0.7, method='union',
                                 initial_sort=True)
    b = mb.resize_to_square(b)
    if not len(b):
      return [[] for _ in range(n)]
    # Stage 3 (StageONet.__call__).
    off, landmarks, scores = onet(
        mi.extract_patches(images, b, expected_size=(48, 48)))
    landmarks = adjust_landmarks(landmarks, b)
    b = mb.replace_confidence(b, scores)
    b = mb.adjust_bboxes(b, off)
    b = np.concatenate([b, landmarks], axis=-1)
    b = mb.pick_matches(b, scores_column=5, score_threshold=0.8)
    b = mb.smart_nms_from_bboxes(b, threshold=0.7, method='min',
                                 initial_sort=True)
    # MTCNN.detect_faces's post-processing (fit_to_image=True).
    b = mb.fix_bboxes_offsets(b, pad)
    b = mb.limit_bboxes(b, images_shapes=oshapes, limit_landmarks=False)
    return mb.to_json(b, images_count=n, output_as_width_height=True,
                      input_as_width_height=False)


_FAST = None
FAST_MTCNN_VERSIONS = ('1.0.',)


@functools.lru_cache(maxsize=None)
def fast_mtcnn_supported() -> bool:
  """Is the installed ``mtcnn`` the version FastMTCNN mirrors?"""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  try:
    version = metadata.version('mtcnn')
  except metadata.PackageNotFoundError:
    return False
  return version.startswith(FAST_MTCNN_VERSIONS)


def get_fast_mtcnn() -> FastMTCNN:
  """The process-wide FastMTCNN (on top of ``get_mtcnn()``'s detector)."""
  global _FAST
  if _FAST is None:
    _FAST = FastMTCNN(get_mtcnn())
  return _FAST


def detect_boxes(frames: Sequence[np.ndarray], *,
                 batch_size: int = BATCH_SIZE, reference: bool = False,
                 **detector_kwargs) -> list[tuple | None]:
  """Largest MTCNN box (xyxy) per RGB frame, None where no face is found.

  Frames of equal shape go through ``FastMTCNN`` in batches of
  ``batch_size`` (frames of several clips may be mixed: each frame's boxes
  depend on that frame only).  ``reference=True`` is the package's own call
  on all frames at once (the code before the fast path).
  ``detector_kwargs``: ``min_face_size`` (default 20 px) and
  ``scale_factor`` (0.709) of the image pyramid (``pyramid_scales``); other
  values change the crops (opt-in, see docs/data.md).
  """
  if not frames:
    return []
  if reference or not fast_mtcnn_supported():
    return detect_boxes_reference(frames, **detector_kwargs)
  fast = get_fast_mtcnn()
  boxes: list[tuple | None] = [None] * len(frames)
  by_shape: dict[tuple, list[int]] = {}
  for i, f in enumerate(frames):
    by_shape.setdefault(f.shape, []).append(i)
  for idx in by_shape.values():
    for lo in range(0, len(idx), batch_size):
      part = idx[lo:lo + batch_size]
      results = fast.detect([frames[i] for i in part], **detector_kwargs)
      for i, r in zip(part, results):
        boxes[i] = largest_box(r)
  return boxes


def face_crops(frames: Sequence[np.ndarray], detector: str = 'mtcnn', *,
               reference: bool = False,
               **detector_kwargs) -> tuple[np.ndarray, int]:
  """RGB frames -> (uint8 crops [F, 48, 48, 3], number of centre fallbacks).

  ``reference=True`` detects with the package's own call (the code before
  the fast path; same crops, slower).  ``detector_kwargs`` go to
  ``detect_boxes``.
  """
  (out,) = face_crops_many([frames], detector, reference=reference,
                           **detector_kwargs)
  return out


def face_crops_many(clips: Sequence[Sequence[np.ndarray]],
                    detector: str = 'mtcnn', *, reference: bool = False,
                    **detector_kwargs) -> list[tuple[np.ndarray, int]]:
  """``face_crops`` of several clips, detected in shared batches."""
  if detector not in DETECTORS:
    raise ValueError(f'face detector must be one of {DETECTORS}, got '
                     f'{detector!r}')
  clips = [[np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
           for frames in clips]
  flat = [f for frames in clips for f in frames]
  if detector != 'mtcnn':
    boxes = [None] * len(flat)
  elif reference:    # the old code: one call per clip
    boxes = [b for frames in clips
             for b in detect_boxes(frames, reference=True, **detector_kwargs)]
  else:
    boxes = detect_boxes(flat, **detector_kwargs)
  out, at = [], 0
  for frames in clips:
    out.append(_crops(frames, boxes[at:at + len(frames)], detector))
    at += len(frames)
  return out


def _crops(frames, boxes, detector: str) -> tuple[np.ndarray, int]:
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
