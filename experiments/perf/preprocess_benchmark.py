"""Preprocessing benchmark: per-stage rates on generated MOSEI / IEMOCAP-like
videos, and the old code path beside the fast one (``--compare``).

Videos (written once to ``--video_dir``):

* MOSEI-like: 1280x720, 30 fps, H.264 (libx264 via PyAV, B-frames), a real
  face (``skimage.data.astronaut()``, the whole photo scaled) whose position
  and size change over time on a textured background; a 16 kHz mono wav. The
  clip is [1 s, seconds) of the file, so decoding starts with a seek.
* IEMOCAP-like: 720x480 side by side (two speakers, the photo and its mirror
  image in the left / right halves, moving), 30 fps, MPEG-4 part 2 in an
  .avi (like the release's DivX); a 16 kHz stereo wav. Clips alternate sides.

Stages (one process, TensorFlow on one thread; rates per CPU second of the
process, i.e. per core, which other load on the machine changes less than
wall time): decode and
sample (frames + the dataset's rule), face detection, crop, audio (wav + mel),
tokenisation (bundled MiniLM tokenizer), writing (the cache npz and the TFDS
example bytes). ``--compare`` runs the code before the fast path too
(OpenCV decoding of every frame, the ``mtcnn`` package's own call per clip)
on the same videos, checks that frames, boxes and crops are identical, and
runs both end to end in a pool of ``--workers`` processes
(``preprocess.compute_clip``), which is the number to compare.

    python experiments/perf/preprocess_benchmark.py --compare --out /tmp/pre.json
"""

from __future__ import annotations

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # checkout


import argparse
import json
import math
import os
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from data_pipelines import audio  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import faces  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import preprocess  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines.readers import Clip  # pylint: disable=g-import-not-at-top,wrong-import-position

FPS = 30
MOSEI_SIZE = (1280, 720)
IEMOCAP_SIZE = (720, 480)
TEXT = 'and i think that is the reason why we all came here today'


# ------------------------------------------------------------------ videos


def _photo() -> np.ndarray:
  from skimage import data  # pylint: disable=g-import-not-at-top
  return data.astronaut()[..., ::-1].copy()          # BGR


def _background(rng, width: int, height: int) -> np.ndarray:
  small = rng.integers(40, 200, (height // 16, width // 16, 3), np.uint8)
  return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _paste(canvas, img, side: int, cx: float, cy: float) -> None:
  """Pastes ``img`` scaled to side x side centred at (cx, cy), clipped."""
  h, w = canvas.shape[:2]
  face = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
  x, y = int(cx - side / 2), int(cy - side / 2)
  x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
  canvas[y0:y1, x0:x1] = face[y0 - y:y1 - y, x0 - x:x1 - x]


def _encode(path: Path, codec: str, size, frames, options=None) -> None:
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path), 'w') as container:
    stream = container.add_stream(codec, rate=FPS, options=options or {})
    stream.width, stream.height = size
    stream.pix_fmt = 'yuv420p'
    if codec == 'mpeg4':
      stream.bit_rate = 2_000_000
    for frame in frames:
      container.mux(stream.encode(
          av.VideoFrame.from_ndarray(frame, format='bgr24')))
    container.mux(stream.encode(None))


def _wav(path: Path, seconds: float, channels: int, seed: int) -> None:
  from scipy.io import wavfile  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  n = int(seconds * audio.SAMPLE_RATE)
  t = np.arange(n) / audio.SAMPLE_RATE
  wave = 0.1 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(n)
  wave = np.stack([wave] * channels, -1) if channels > 1 else wave
  wavfile.write(path, audio.SAMPLE_RATE, (wave * 32767).astype(np.int16))


def write_mosei_like(out: Path, index: int, seconds: float) -> Clip:
  """One 1280x720 H.264 video + wav; the clip is [1 s, seconds)."""
  width, height = MOSEI_SIZE
  video_path = out / f'mosei_{index}.mp4'
  wav_path = out / f'mosei_{index}.wav'
  if not video_path.is_file():
    rng = np.random.default_rng(index)
    photo, bg = _photo(), _background(rng, width, height)
    phase = rng.uniform(0, 2 * np.pi)

    def frames():
      for i in range(int(seconds * FPS)):
        t = i / FPS + phase
        frame = bg.copy()
        side = int(height * (0.6 + 0.15 * math.sin(0.7 * t)))
        _paste(frame, photo, side, width / 2 + 0.06 * width * math.sin(1.3 * t),
               height / 2 + 0.05 * height * math.cos(t))
        yield frame

    tmp = video_path.with_suffix('.tmp.mp4')
    _encode(tmp, 'libx264', MOSEI_SIZE, frames(), {'preset': 'veryfast'})
    tmp.rename(video_path)
    _wav(wav_path, seconds, 1, index)
  return Clip(clip_id=f'mosei_{index}', dataset='mosei', layout='raw',
              text=TEXT, labels=np.zeros(6, np.float32),
              audio_path=str(wav_path), video_path=str(video_path),
              start=1.0, end=float(seconds))


def write_iemocap_like(out: Path, index: int, seconds: float) -> Clip:
  """One 720x480 side-by-side MPEG-4 .avi + stereo wav."""
  width, height = IEMOCAP_SIZE
  video_path = out / f'iemocap_{index}.avi'
  wav_path = out / f'iemocap_{index}.wav'
  if not video_path.is_file():
    rng = np.random.default_rng(100 + index)
    photo, bg = _photo(), _background(rng, width, height)
    mirror = photo[:, ::-1].copy()

    def frames():
      for i in range(int(seconds * FPS)):
        t = i / FPS
        frame = bg.copy()
        half = width // 2
        for k, img in enumerate((photo, mirror)):
          side = int(0.5 * height * (1 + 0.15 * math.sin(0.9 * t + k)))
          _paste(frame, img, side,
                 k * half + half / 2 + 0.1 * half * math.sin(1.1 * t + k),
                 height * 0.45 + 0.05 * height * math.cos(t))
        yield frame

    tmp = video_path.with_suffix('.tmp.avi')
    _encode(tmp, 'mpeg4', IEMOCAP_SIZE, frames())
    tmp.rename(video_path)
    _wav(wav_path, seconds, 2, 100 + index)
  side = 'left' if index % 2 == 0 else 'right'
  return Clip(clip_id=f'iemocap_{index}', dataset='iemocap', layout='raw',
              text=TEXT, labels=np.eye(6, dtype=np.float32)[index % 6],
              audio_path=str(wav_path), video_path=str(video_path),
              start=0.5, end=float(seconds) - 0.2, side=side,
              channel=0 if side == 'left' else 1)


# ------------------------------------------------------------------ stages


def _timed(fn, *args, **kwargs):
  """(result, CPU seconds of this process): robust to other load."""
  t = time.process_time()
  out = fn(*args, **kwargs)
  return out, time.process_time() - t


def _tfds_serializer():
  """Encodes + serialises an example with the builders' feature spec."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core import example_serializer  # pylint: disable=g-import-not-at-top
  tensor = tfds.features.Tensor
  features = tfds.features.FeaturesDict({
      'clip_id': tfds.features.Text(), 'text': tfds.features.Text(),
      'text_ids': tensor(shape=(100,), dtype=np.int32),
      'text_mask': tensor(shape=(100,), dtype=np.int32),
      'faces': tensor(shape=(None, 48, 48, 3), dtype=np.uint8,
                      encoding='bytes'),
      'spec': tensor(shape=(None, 128, 32), dtype=np.float16,
                     encoding='bytes'),
      'labels': tensor(shape=(6,), dtype=np.float32),
      'n_frames': tensor(shape=(), dtype=np.int32),
      'n_chunks': tensor(shape=(), dtype=np.int32),
      'face_fallbacks': tensor(shape=(), dtype=np.int32)})
  serializer = example_serializer.ExampleSerializer(
      features.get_serialized_info())
  return lambda ex: serializer.serialize_example(features.encode_example(ex))


def run_stages(clips: list[Clip], opts: preprocess.Options, *,
               reference: bool, tokenizer, serialize, tmp: Path) -> dict:
  """Seconds per stage over ``clips`` in this process, and the outputs."""
  sec = dict.fromkeys(('decode', 'detect', 'crop', 'audio', 'tokenise',
                       'write'), 0.0)
  decoder = 'opencv' if reference else 'pyav'
  frames = []
  for clip in clips:
    f, dt = _timed(preprocess.clip_frames, clip, opts.img_interval, decoder)
    frames.append(f)
    sec['decode'] += dt
  flat = [np.ascontiguousarray(f) for fs in frames for f in fs]
  if reference:     # the old code: the package's call on each clip's frames
    boxes = []
    for fs in frames:
      b, dt = _timed(faces.detect_boxes, [np.ascontiguousarray(f) for f in fs],
                     reference=True)
      boxes += b
      sec['detect'] += dt
  else:             # batches of BATCH_SIZE frames across clips
    boxes, sec['detect'] = _timed(faces.detect_boxes, flat)
  t = time.process_time()
  crops = [faces.center_crop(f) if b is None else faces.crop_box(f, b)
           for f, b in zip(flat, boxes)]
  sec['crop'] = time.process_time() - t
  at = 0
  for i, clip in enumerate(clips):
    (spec, rate), dt = _timed(preprocess.clip_spec, clip, opts.log_mel)
    sec['audio'] += dt
    n = len(frames[i])
    arrays = {'faces': np.stack(crops[at:at + n]), 'spec': spec,
              'face_fallbacks': np.int64(sum(b is None for b in
                                             boxes[at:at + n])),
              'audio_rate': np.int64(rate)}
    at += n
    _, dt = _timed(tokenizer.encode, [clip.text], 100)
    sec['tokenise'] += dt
    t = time.process_time()
    preprocess.save_arrays(preprocess.cache_path(tmp, clip.clip_id), arrays)
    from data_pipelines.tfds import base  # pylint: disable=g-import-not-at-top
    serialize(base.to_tfds_example(
        clip.clip_id, preprocess.make_example(clip, arrays), tokenizer, 100))
    sec['write'] += time.process_time() - t
  return {'seconds': sec, 'frames': frames, 'boxes': boxes, 'crops': crops,
          'n_frames': len(flat), 'n_clips': len(clips)}


def _max_box_diff(a, b) -> float:
  diffs = [0.0 if x == y else
           (math.inf if x is None or y is None else
            float(np.max(np.abs(np.subtract(x, y)))))
           for x, y in zip(a, b)]
  return max(diffs, default=0.0)


def compare_outputs(old: dict, new: dict) -> dict:
  """Are frames, boxes and crops of the two paths identical?"""
  frames_equal = all(
      len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
      for a, b in zip(old['frames'], new['frames']))
  crop_diff = max((int(np.max(np.abs(x.astype(int) - y.astype(int))))
                   for x, y in zip(old['crops'], new['crops'])), default=0)
  return {'frames_equal': bool(frames_equal),
          'boxes_equal': old['boxes'] == new['boxes'],
          'max_box_diff_px': _max_box_diff(old['boxes'], new['boxes']),
          'crops_equal': crop_diff == 0, 'max_crop_diff': crop_diff}


def opt_in_detect(res: dict, min_face_size: int) -> dict:
  """Detection with an opt-in min_face_size on the same frames: its rate
  and how far its crops are from the default's."""
  flat = [np.ascontiguousarray(f) for fs in res['frames'] for f in fs]
  boxes, sec = _timed(faces.detect_boxes, flat, min_face_size=min_face_size)
  crops = [faces.center_crop(f) if b is None else faces.crop_box(f, b)
           for f, b in zip(flat, boxes)]
  diffs = [int(np.max(np.abs(a.astype(int) - b.astype(int))))
           for a, b in zip(res['crops'], crops)]
  return {'min_face_size': min_face_size, 'frames': len(flat),
          'frames_per_cpu_s': len(flat) / sec,
          'default_frames_per_cpu_s': len(flat) / res['seconds']['detect'],
          'crops_differing': sum(d > 0 for d in diffs),
          'max_crop_diff': max(diffs, default=0),
          'max_box_diff_px': _max_box_diff(res['boxes'], boxes),
          'no_face': sum(b is None for b in boxes),
          'no_face_default': sum(b is None for b in res['boxes'])}


# -------------------------------------------------------------- end to end


def _warm(clips):
  """One-time costs of a worker (imports, MTCNN, TF graphs, the first-clip
  PyAV / OpenCV agreement check of each codec), not timed."""
  faces.get_fast_mtcnn().detect([np.zeros((64, 64, 3), np.uint8)])
  faces.detect_boxes([np.zeros((64, 64, 3), np.uint8)], reference=True)
  for clip in clips:
    for decoder in ('pyav', 'opencv'):
      preprocess.clip_frames(clip, 500, decoder)
  time.sleep(1.0)         # so that every worker gets one warm-up task
  return os.getpid()


def _clip_task(clip, opts, reference):
  t = time.process_time()
  arrays = preprocess.compute_clip(clip, opts, reference=reference)
  return arrays['faces'], time.process_time() - t


def run_pool(clips, opts, workers: int, reference: bool) -> dict:
  """compute_clip of every clip in a pool of ``workers`` processes."""
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import multiprocessing  # pylint: disable=g-import-not-at-top
  threads = max(1, (os.cpu_count() or 1) // workers)
  with concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn'),
      initializer=preprocess._init_worker,  # pylint: disable=protected-access
      initargs=(threads,)) as pool:
    firsts = list({c.dataset: c for c in reversed(clips)}.values())
    list(pool.map(_warm, [firsts] * workers))
    t = time.perf_counter()
    results = list(pool.map(_clip_task, clips, [opts] * len(clips),
                            [reference] * len(clips)))
    wall = time.perf_counter() - t
  crops = [r[0] for r in results]
  return {'wall_s': wall, 'worker_cpu_s': sum(r[1] for r in results),
          'n_frames': sum(len(c) for c in crops), 'n_clips': len(clips),
          'crops': crops}


# ----------------------------------------------------------------- report


STAGES = ('decode', 'detect', 'crop', 'audio', 'tokenise', 'write')


def stage_rows(name: str, res: dict) -> list[dict]:
  rows = []
  for stage in STAGES:
    s = res['seconds'][stage]
    rows.append({'data': name, 'stage': stage, 'seconds': s,
                 'frames_per_s': res['n_frames'] / s if s else math.inf,
                 'clips_per_s': res['n_clips'] / s if s else math.inf})
  total = sum(res['seconds'].values())
  rows.append({'data': name, 'stage': 'total', 'seconds': total,
               'frames_per_s': res['n_frames'] / total,
               'clips_per_s': res['n_clips'] / total})
  return rows


def markdown(report: dict) -> str:
  lines = []
  compare = 'old' in report
  head = ('| data | stage | frames per CPU s (new) | clips per CPU s (new) |'
          + (' frames per CPU s (old) | speed-up |' if compare else ''))
  lines += [head, '|' + '---|' * (head.count('|') - 1)]
  for i, row in enumerate(report['new']['rows']):
    line = (f"| {row['data']} | {row['stage']} | {row['frames_per_s']:.1f} | "
            f"{row['clips_per_s']:.2f} |")
    if compare:
      old = report['old']['rows'][i]
      line += (f" {old['frames_per_s']:.1f} | "
               f"{old['seconds'] / row['seconds']:.2f}x |"
               if row['seconds'] else ' | |')
    lines.append(line)
  if 'pool' in report:
    lines += ['', '| end to end: compute_clip in a pool | workers | frames | '
              'wall s | frames/s (wall) | worker CPU s | frames per CPU s |',
              '|---|---|---|---|---|---|---|']
    for path, r in report['pool'].items():
      lines.append(f"| {path} | {r['workers']} | {r['n_frames']} | "
                   f"{r['wall_s']:.1f} | {r['frames_per_s']:.1f} | "
                   f"{r['worker_cpu_s']:.1f} | {r['frames_per_cpu_s']:.1f} |")
    if 'speedup' in report:
      lines.append(f"\nEnd-to-end speed-up, new / old: "
                   f"{report['speedup']:.2f}x in frames per CPU second, "
                   f"{report['speedup_wall']:.2f}x in wall-clock frames/s")
  if 'equal' in report:
    lines += ['', 'Old vs new outputs: ' + json.dumps(report['equal'])]
  if 'opt_in' in report:
    lines += ['', '| data | opt-in min_face_size | detect frames per CPU s '
              '(default) | crops differing | max pixel diff | max box diff '
              'px | no face (default) |', '|---|---|---|---|---|---|---|']
    for name, r in report['opt_in'].items():
      lines.append(
          f"| {name} | {r['min_face_size']} | {r['frames_per_cpu_s']:.1f} "
          f"({r['default_frames_per_cpu_s']:.1f}) | {r['crops_differing']}/"
          f"{r['frames']} | {r['max_crop_diff']} | {r['max_box_diff_px']:.1f}"
          f" | {r['no_face']} ({r['no_face_default']}) |")
  return '\n'.join(lines)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--clips', type=int, default=4,
                 help='MOSEI-like clips (1280x720 H.264)')
  p.add_argument('--seconds', type=float, default=13.0,
                 help='length of each MOSEI-like video (the clip starts at '
                 '1 s)')
  p.add_argument('--iemocap_clips', type=int, default=8,
                 help='IEMOCAP-like clips (720x480 side by side, MPEG-4)')
  p.add_argument('--iemocap_seconds', type=float, default=5.0)
  p.add_argument('--img_interval', type=int, default=500)
  p.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                 help='processes of the end-to-end run (0: skip it)')
  p.add_argument('--compare', action='store_true',
                 help='run the old path too, check outputs are identical')
  p.add_argument('--video_dir', default=os.path.join(
      tempfile.gettempdir(), 'preprocess_benchmark_videos'))
  p.add_argument('--min_face_size', type=int, default=0,
                 help='also time detection with this opt-in MTCNN '
                 'min_face_size and report how its crops differ')
  p.add_argument('--out', default='', help='JSON report file')
  args = p.parse_args(argv)

  out = Path(args.video_dir)
  out.mkdir(parents=True, exist_ok=True)
  t = time.perf_counter()
  data = {'mosei': [write_mosei_like(out, i, args.seconds)
                    for i in range(args.clips)],
          'iemocap': [write_iemocap_like(out, i, args.iemocap_seconds)
                      for i in range(args.iemocap_clips)]}
  print(f'videos ready in {time.perf_counter() - t:.1f} s ({out})',
        flush=True)

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  cv2.setNumThreads(1)
  from data_pipelines import text  # pylint: disable=g-import-not-at-top
  tokenizer = text.get_tokenizer('minilm')
  serialize = _tfds_serializer()
  opts = preprocess.Options(img_interval=args.img_interval)

  for clips in data.values():    # warm-up (TF graphs, imports), not timed
    with tempfile.TemporaryDirectory() as tmp:
      for path in ('new', 'old'):
        run_stages(clips[:1], opts, reference=path == 'old',
                   tokenizer=tokenizer, serialize=serialize, tmp=Path(tmp))
  report = {'args': vars(args), 'cpu_count': os.cpu_count(),
            'load_before': os.getloadavg()}
  paths = ['new', 'old'] if args.compare else ['new']
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    for path in paths:
      rows, results[path] = [], {}
      for name, clips in data.items():
        if not clips:
          continue
        res = run_stages(clips, opts, reference=path == 'old',
                         tokenizer=tokenizer, serialize=serialize,
                         tmp=Path(tmp))
        results[path][name] = res
        rows += stage_rows(name, res)
        print(f'{path} {name}: ' + ', '.join(
            f'{k} {v:.2f} s' for k, v in res['seconds'].items()), flush=True)
      report[path] = {'rows': rows}
  if args.min_face_size:
    report['opt_in'] = {name: opt_in_detect(res, args.min_face_size)
                        for name, res in results['new'].items()}
  if args.compare:
    report['equal'] = {name: compare_outputs(results['old'][name],
                                             results['new'][name])
                       for name in results['new']}
  if args.workers > 0:
    clips = [c for cs in data.values() for c in cs]
    report['pool'] = {}
    for path in paths:
      r = run_pool(clips, opts, args.workers, reference=path == 'old')
      crops = r.pop('crops')
      results[path]['pool_crops'] = crops
      r['workers'] = args.workers
      r['frames_per_s'] = r['n_frames'] / r['wall_s']
      r['frames_per_cpu_s'] = r['n_frames'] / r['worker_cpu_s']
      report['pool'][path] = r
      print(f'pool {path}: {r["n_frames"]} frames in {r["wall_s"]:.1f} s '
            f'({r["worker_cpu_s"]:.1f} CPU s in the workers)', flush=True)
    if args.compare:
      report['speedup'] = (report['pool']['new']['frames_per_cpu_s'] /
                           report['pool']['old']['frames_per_cpu_s'])
      report['speedup_wall'] = (report['pool']['new']['frames_per_s'] /
                                report['pool']['old']['frames_per_s'])
      report['equal']['pool_crops_equal'] = all(
          np.array_equal(a, b) for a, b in zip(results['old']['pool_crops'],
                                               results['new']['pool_crops']))
  report['load_after'] = os.getloadavg()
  table = markdown(report)
  print(table)
  print(f"load average before {report['load_before']}, after "
        f"{report['load_after']}")
  if args.out:
    Path(args.out).write_text(json.dumps({**report, 'table': table},
                                         indent=1, default=str))
  return report


if __name__ == '__main__':
  main()
