"""Face crops: MTCNN on a real photo, margin rule, centre fallback, one MTCNN."""

import chex
import cv2
import numpy as np
import pytest
from skimage import data as skimage_data  # dev dependency: scikit-image

from data_pipelines import faces

# The astronaut's face in skimage.data.astronaut() (512x512), x1, y1, x2, y2:
# from the hairline to the chin and between the ears, read off the image.
ASTRONAUT_FACE = (165, 45, 285, 190)


def overlap(a, b) -> float:
  """Intersection over the area of box ``a``."""
  w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
  h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
  return w * h / ((a[2] - a[0]) * (a[3] - a[1]))


@pytest.fixture(scope='module')
def astronaut():
  return skimage_data.astronaut()


def test_mtcnn_finds_the_astronaut_and_the_crop_holds_her_face(astronaut):
  before = faces.mtcnn_constructions
  (box,) = faces.detect_boxes([astronaut])
  assert box is not None
  crop_box = faces.margin_box(box, astronaut.shape)
  assert overlap(crop_box, ASTRONAUT_FACE) > 0.8
  crops, fallbacks = faces.face_crops([astronaut, astronaut], 'mtcnn')
  chex.assert_shape(crops, (2, 48, 48, 3))
  assert crops.dtype == np.uint8 and fallbacks == 0
  # The 48x48 crop itself is a face: MTCNN finds one in it once upscaled
  # and placed on a plain background (it needs some context around a face).
  big = cv2.resize(crops[0], (144, 144), interpolation=cv2.INTER_CUBIC)
  canvas = np.full((288, 288, 3), 128, np.uint8)
  canvas[72:216, 72:216] = big
  (again,) = faces.detect_boxes([canvas])
  assert again is not None and overlap(again, (72, 72, 216, 216)) > 0.5
  # Pixel values stay in 0..255 (no whitening): the crop is the resized box.
  x1, y1, x2, y2 = crop_box
  ref = cv2.resize(astronaut[y1:y2, x1:x2], (48, 48),
                   interpolation=cv2.INTER_AREA)
  np.testing.assert_array_equal(crops[0], ref)
  # One detector per process, reused for every frame.
  assert faces.mtcnn_constructions - before <= 1
  faces.face_crops([astronaut] * 3, 'mtcnn')
  assert faces.mtcnn_constructions == max(before, 1)


def test_frame_without_face_falls_back_to_centre_and_is_counted(astronaut):
  blank = np.full((120, 200, 3), 90, np.uint8)
  blank[30:90, 70:130] = 200         # a square, no face
  crops, fallbacks = faces.face_crops([blank, astronaut], 'mtcnn')
  assert fallbacks == 1
  np.testing.assert_array_equal(crops[0], faces.center_crop(blank))


def test_center_crop_is_the_centre_square_resized():
  frame = np.zeros((100, 160, 3), np.uint8)
  frame[:, 30:130] = 255             # exactly the centre 100x100 square
  crop = faces.center_crop(frame)
  chex.assert_shape(crop, (48, 48, 3))
  assert crop.min() == 255
  crops, fallbacks = faces.face_crops([frame] * 3, 'center')
  assert fallbacks == 3 and crops.shape == (3, 48, 48, 3)


def test_margin_box_rule_and_clipping():
  # margin 2 output pixels = 2 * w / 46 frame pixels, split on both sides.
  box = (100.0, 50.0, 192.0, 142.0)                 # 92 x 92
  x1, y1, x2, y2 = faces.margin_box(box, (300, 300, 3))
  pad = 2 * 92 / 46 / 2                               # 2 px each side
  assert (x1, y1, x2, y2) == (int(100 - pad), int(50 - pad), int(192 + pad),
                              int(142 + pad))
  assert faces.margin_box((0, 0, 40, 40), (30, 30, 3)) == (0, 0, 30, 30)
  assert faces.largest_box([{'box': [0, 0, 10, 10]},
                            {'box': [5, 5, 30, 20]}]) == (5, 5, 35, 25)
  assert faces.largest_box([]) is None


def test_unknown_detector_is_an_error():
  with pytest.raises(ValueError, match='face detector'):
    faces.face_crops([np.zeros((10, 10, 3), np.uint8)], 'haar')


def _frames_of_clips(astronaut):
  """Two 'clips' of 360x360 frames (the photo scaled and moved, a blank
  frame) and the photo itself: frames of several sizes and clips."""
  clips = []
  for k, (side, x, y) in enumerate([(220, 60, 40), (300, 30, 50),
                                    (180, 150, 120)]):
    frame = np.full((360, 360, 3), 60 + 40 * k, np.uint8)
    frame[y:y + side, x:x + side] = cv2.resize(astronaut, (side, side),
                                               interpolation=cv2.INTER_AREA)
    clips.append(frame)
  blank = np.full((360, 360, 3), 128, np.uint8)
  return [clips[:2], [clips[2], blank], [astronaut]]


def test_fast_batched_detection_equals_the_package_call_per_frame(astronaut):
  """FastMTCNN in batches across clips == detect_faces on each frame alone
  (and == the old call on each clip): boxes bit for bit, crops equal."""
  clips = _frames_of_clips(astronaut)
  flat = [f for c in clips for f in c]
  per_frame = [faces.detect_boxes([f], reference=True)[0] for f in flat]
  per_clip = [b for c in clips for b in faces.detect_boxes(c, reference=True)]
  assert per_frame == per_clip
  assert per_frame[3] is None and all(
      b is not None for i, b in enumerate(per_frame) if i != 3)
  for batch_size in (1, 2, 16):
    assert faces.detect_boxes(flat, batch_size=batch_size) == per_frame
  new = faces.face_crops_many(clips)
  old = faces.face_crops_many(clips, reference=True)
  for (a, fa), (b, fb) in zip(new, old):
    np.testing.assert_array_equal(a, b)
    assert fa == fb
  np.testing.assert_array_equal(faces.face_crops(clips[0])[0], new[0][0])


def test_default_pyramid_is_the_packages(astronaut):
  """The default settings keep the package's pyramid (the original crops);
  a larger min_face_size (opt-in) uses the standard MTCNN rule and still
  finds the face, with fewer, smaller levels."""
  from mtcnn.utils import images as mi
  for w, h in [(360, 360), (360, 480), (512, 512), (640, 360), (96, 120)]:
    np.testing.assert_array_equal(
        faces.pyramid_scales(w, h),
        mi.build_scale_pyramid(w, h, min_face_size=20, scale_factor=0.709))
  big = faces.pyramid_scales(360, 360, min_face_size=40)
  assert big[0] == pytest.approx(0.3) and len(big) == 7
  assert 360 * big[-1] >= 12 > 360 * big[-1] * 0.709
  (box,) = faces.detect_boxes([astronaut], min_face_size=40)
  assert box is not None
  assert overlap(faces.margin_box(box, astronaut.shape), ASTRONAUT_FACE) > 0.8
