"""Fast frame decoding (PyAV, non-reference frames skipped) == OpenCV's."""

import av
import cv2
import numpy as np
import pytest

from data_pipelines import video

FPS = 30


def _frames(n, width, height, seed=0):
  """Moving textured frames (BGR): every frame differs from its neighbours."""
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 255, (height, width, 3), np.uint8)
  for i in range(n):
    frame = np.roll(base, 3 * i, axis=1)
    cv2.putText(frame, str(i), (5, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1,
                (255, 255, 255), 2)
    yield frame


@pytest.fixture(scope='module')
def h264(tmp_path_factory):
  """H.264 with B-frames (x264 defaults: b-pyramid, non-reference B)."""
  path = tmp_path_factory.mktemp('video') / 'h264.mp4'
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=FPS,
                                  options={'preset': 'ultrafast', 'bf': '3',
                                           'g': '40'})
    stream.width, stream.height = 96, 64
    stream.pix_fmt = 'yuv420p'
    for frame in _frames(100, 96, 64):
      container.mux(stream.encode(av.VideoFrame.from_ndarray(
          frame, format='bgr24')))
    container.mux(stream.encode(None))
  return path


@pytest.fixture(scope='module')
def mp4v(tmp_path_factory):
  """MPEG-4 part 2 written by OpenCV, as the synthetic datasets are."""
  path = tmp_path_factory.mktemp('video') / 'mp4v.mp4'
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), FPS,
                           (96, 64))
  for frame in _frames(75, 96, 64, seed=1):
    writer.write(frame)
  writer.release()
  return path


SPANS = [(0.0, None, 500), (1.3, 2.9, 500), (0.4, None, 100), (0.0, 1.0, 33),
         (2.4, None, 500)]


@pytest.mark.parametrize('name', ['h264', 'mp4v'])
def test_fast_decode_returns_the_old_frames_byte_for_byte(name, request):
  path = request.getfixturevalue(name)
  for start, end, interval in SPANS:
    old = video.read_frames(path, start=start, end=end, img_interval=interval,
                            decoder='opencv')
    new = video.read_frames(path, start=start, end=end, img_interval=interval)
    assert len(new) == len(old) > 0, (start, end, interval)
    for a, b in zip(old, new):
      assert a.dtype == b.dtype == np.uint8 and a.flags.c_contiguous
      assert b.flags.c_contiguous
      np.testing.assert_array_equal(a, b)


class _Counting:
  """``av.open`` whose packets count the frames FFmpeg hands back."""

  def __init__(self, open_):
    self.open, self.decoded = open_, 0

  def __call__(self, *args, **kwargs):
    outer, container = self, self.open(*args, **kwargs)

    class Packet:
      def __init__(self, packet):
        self._packet, self.pts = packet, packet.pts

      def decode(self):
        frames = self._packet.decode()
        outer.decoded += len(frames)
        return frames

    class Container:
      streams = container.streams
      seek = container.seek
      close = container.close

      def demux(self, *a, **k):
        return (Packet(p) for p in container.demux(*a, **k))
    return Container()


def test_fast_decode_is_really_used_and_skips_frames(h264, monkeypatch):
  start, end, interval = SPANS[0]   # the once-per-process PyAV == OpenCV
  video.read_frames(h264, start=start, end=end, img_interval=interval)
  wanted = list(range(3, 100, 15))
  counting = _Counting(av.open)
  monkeypatch.setattr(av, 'open', counting)
  frames, pix_fmt = video._pyav_decode_indices(h264, wanted, FPS)  # pylint: disable=protected-access
  assert frames is not None and len(frames) == len(wanted)
  assert pix_fmt == 'h264/yuv420p' and video._PYAV_AGREES[pix_fmt]  # pylint: disable=protected-access
  # The project's decoder leaves the unsampled non-reference B-frames
  # undecoded: decoding every frame up to the last wanted one (93) would
  # hand back at least 94; this file gives 56 (x264's B-frame layout).
  assert len(wanted) <= counting.decoded <= 70


def test_fast_decode_falls_back_when_not_exact(h264, monkeypatch):
  """No exact PyAV answer (here: forced) -> the OpenCV path's frames."""
  monkeypatch.setattr(video, '_pyav_decode_indices', lambda *a: (None, ''))
  old = video.read_frames(h264, start=0.5, end=2.0, decoder='opencv')
  new = video.read_frames(h264, start=0.5, end=2.0)
  assert len(old) == len(new) == 3
  for a, b in zip(old, new):
    np.testing.assert_array_equal(a, b)


def test_a_pyav_build_that_converts_differently_is_turned_off(h264,
                                                              monkeypatch):
  """The first clip of a codec and pixel format is checked against OpenCV;
  if PyAV's pixels differ, OpenCV decodes that format from then on."""
  real = video._pyav_decode_indices  # pylint: disable=protected-access

  def off_by_one(*args):
    frames, pix_fmt = real(*args)
    return (None if frames is None else [f ^ 1 for f in frames]), pix_fmt

  monkeypatch.setattr(video, '_PYAV_AGREES', {})
  monkeypatch.setattr(video, '_pyav_decode_indices', off_by_one)
  old = video.read_frames(h264, start=0.5, end=2.0, decoder='opencv')
  for _ in range(2):
    new = video.read_frames(h264, start=0.5, end=2.0)
    assert len(old) == len(new) == 3
    for a, b in zip(old, new):
      np.testing.assert_array_equal(a, b)
  assert video._PYAV_AGREES == {'h264/yuv420p': False}  # pylint: disable=protected-access


def test_unknown_decoder_is_an_error(h264):
  with pytest.raises(ValueError, match='decoder'):
    video.read_frames(h264, decoder='gstreamer')
