"""Clip -> example: face crops, mel chunks, text and labels, cached per clip.

``iter_examples`` is the one entry point (the TFDS builders call it):

* the dataset reader lists the split's clips (either layout, auto-detected);
* every clip not yet in the cache is processed in a pool of worker processes
  (all CPU cores by default; each worker builds its MTCNN once);
* frames are decoded with PyAV and faces found by ``faces.FastMTCNN`` (the
  fast path: the same arrays as the OpenCV / ``mtcnn.detect_faces`` code
  before it, which ``compute_clip(..., reference=True)`` still runs);
* a worker writes the clip's arrays to ``<cache>/<key>/<clip id>.npz``
  atomically (temporary file, then ``os.replace``), so an interrupted build
  loses nothing and a rerun only computes what is missing;
* audio at another rate than 16 kHz is resampled to 16 kHz (``audio``);
* a clip that cannot be used (missing or corrupt video / wav, no frame, no
  audio or less than one spectrogram frame of it, empty transcript, unknown
  label, ...) is skipped: one JSON line ``{clip_id, reason, file, ...}`` in
  ``cache_dir/skipped.jsonl``; the build goes on and a summary (counts per
  reason, split ids the data lacks, clips resampled from each rate) is logged
  and written to ``cache_dir/summary_<dataset>_<split>.json``.

Examples come back in split-file order.  Text and labels always come from the
reader (cheap), the cache holds the expensive arrays only.

Axis letters: F face frames, C spectrogram chunks, M mel bins (128),
T frames in a chunk (32).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
from pathlib import Path
import threading
import time
from typing import Any, Iterator

from absl import logging
import cv2
import numpy as np
from tqdm import auto as tqdm

from data_pipelines import audio
from data_pipelines import faces
from data_pipelines import readers
from data_pipelines import video
from data_pipelines.readers import Clip, Skip

SKIP_LOG = 'skipped.jsonl'
# audio_rate: the wav's own rate (resampled to 16 kHz when not 16000), kept
# so that the summary of a run from the cache can count resampled clips.
_ARRAY_KEYS = ('faces', 'spec', 'face_fallbacks', 'audio_rate')


class ClipError(Exception):
  """A clip that cannot be turned into an example (it is skipped)."""

  def __init__(self, reason: str, file: str = '', detail: str = ''):
    super().__init__(f'{reason}: {file} {detail}'.strip())
    self.reason, self.file, self.detail = reason, str(file), detail


@dataclasses.dataclass(frozen=True)
class Options:
  """What the cached arrays depend on."""
  img_interval: int = 500
  log_mel: bool = False
  face_detector: str = 'mtcnn'
  # Opt-in: a larger smallest face for MTCNN's pyramid is faster but moves
  # the boxes (docs/data.md); the default keeps the original's crops.
  min_face_size: int = faces.MIN_FACE_SIZE

  def key(self, dataset: str, layout: str) -> str:
    mel = 'logmel' if self.log_mel else 'mel'
    mfs = ('' if self.min_face_size == faces.MIN_FACE_SIZE or
           self.face_detector != 'mtcnn' else f'_mfs{self.min_face_size}')
    return (f'{dataset}_{layout}_i{self.img_interval}_{mel}_'
            f'{self.face_detector}{mfs}')


@dataclasses.dataclass
class SkipReport:
  """What one ``iter_examples`` run did (also logged as a summary)."""
  dataset: str = ''
  split: str = ''
  layout: str = ''
  in_split_file: int = 0
  yielded: int = 0
  from_cache: int = 0
  computed: int = 0
  skipped: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  skipped_ids: list[str] = dataclasses.field(default_factory=list)
  missing: list[str] = dataclasses.field(default_factory=list)
  face_frames: int = 0
  face_fallbacks: int = 0
  # wav rate -> examples whose audio was resampled from it to 16 kHz.
  resampled: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  seconds: float = 0.0
  # process id -> MTCNN detectors it has built (1 per worker process).
  mtcnn_per_process: dict[int, int] = dataclasses.field(default_factory=dict)

  def as_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d['skipped'] = dict(self.skipped)
    d['missing_count'] = len(self.missing)
    d['resampled'] = {str(sr): n for sr, n in sorted(self.resampled.items())}
    return d

  def summary(self) -> str:
    rate = self.face_fallbacks / max(1, self.face_frames)
    reasons = ', '.join(f'{k}: {v}' for k, v in sorted(self.skipped.items()))
    resampled = ''
    if self.resampled:
      rates = ', '.join(f'{sr} Hz: {n}'
                        for sr, n in sorted(self.resampled.items()))
      resampled = (f'; audio resampled to 16 kHz for '
                   f'{sum(self.resampled.values())} examples ({rates})')
    return (f'{self.dataset}/{self.split} ({self.layout}): '
            f'{self.yielded} examples of {self.in_split_file} ids '
            f'({self.from_cache} cached, {self.computed} computed) in '
            f'{self.seconds:.1f} s; skipped {sum(self.skipped.values())} '
            f'({reasons or "none"}); {len(self.missing)} ids of the split '
            f'file not in the data; face fallbacks {self.face_fallbacks}/'
            f'{self.face_frames} frames ({rate:.1%}){resampled}')


# ----------------------------------------------------------------- one clip


def _check_file(path: str | None, what: str) -> None:
  if not path or not Path(path).is_file():
    raise ClipError(f'missing_{what}', path or '')


def clip_frames(clip: Clip, img_interval: int,
                decoder: str = 'pyav') -> list[np.ndarray]:
  """RGB frames of a clip, one per ``img_interval`` ms, dataset rule applied.

  ``decoder``: see ``video.read_frames`` (both give the same frames).
  """
  if clip.layout == 'raw':
    _check_file(clip.video_path, 'video')
    try:
      frames = video.read_frames(clip.video_path, start=clip.start or 0.0,
                                 end=clip.end, img_interval=img_interval,
                                 decoder=decoder)
    except video.VideoError as e:
      reason = 'no_frames' if 'no decodable frame' in str(e) else 'bad_video'
      raise ClipError(reason, clip.video_path, str(e)) from e
  else:
    stride = max(1, int(round(img_interval / 500)))
    frames = []
    for path in clip.image_paths[::stride]:
      try:
        frames.append(video.read_image(path))
      except video.VideoError:
        continue                      # a corrupt jpg drops one frame
    if not frames:
      folder = str(Path(clip.audio_path).parent)
      raise ClipError('no_frames', folder, 'no readable image_*.jpg')
  if clip.dataset in ('mosei', 'manifest'):   # whole frames: MOSEI's rule
    return [video.mosei_frame(f) for f in frames]
  if clip.layout == 'raw':
    return [video.half_frame(f, clip.side) for f in frames]
  return frames


def clip_spec(clip: Clip, log_mel: bool) -> tuple[np.ndarray, int]:
  """(float16 mel chunks [C, 128, 32] at 16 kHz, the audio's own rate).

  The audio is the clip's wav, or, where it has none (a manifest row with an
  empty audio column), the audio track of its video.
  """
  from_video = not clip.audio_path
  source = clip.video_path if from_video else clip.audio_path
  _check_file(source, 'video' if from_video else 'audio')
  try:
    if from_video:
      wave, sr = audio.read_video_audio(source, clip.start, clip.end)
    else:
      wave, sr = audio.read_clip_audio(source, start=clip.start, end=clip.end,
                                       channel=clip.channel)
    return audio.clip_spectrogram(wave, log_mel=log_mel), sr
  except audio.AudioTooShort as e:
    what = "the video's audio track" if from_video else 'the wav'
    span = ('' if clip.start is None and clip.end is None else
            f' in [{clip.start}, {clip.end}) s of {what}')
    raise ClipError(
        'short_audio', source,
        f'clip {clip.clip_id}: {e.seconds:.3f} s of audio{span}, less than '
        f'one spectrogram frame ({e.n_fft} samples at 16 kHz, '
        f'{e.n_fft / audio.SAMPLE_RATE * 1000:.0f} ms)') from e
  except audio.AudioError as e:
    reason = 'bad_audio' if 'cannot read' in str(e) else 'no_audio'
    raise ClipError(reason, source, str(e)) from e


def compute_clip(clip: Clip, opts: Options, *,
                 reference: bool = False) -> dict[str, np.ndarray]:
  """The expensive arrays of one clip (raises ClipError when unusable).

  ``reference=True`` runs the code before the fast path (OpenCV decoding of
  every frame, the ``mtcnn`` package's own call per clip): the same arrays,
  slower; for experiments/perf/preprocess_benchmark.py ``--compare``.
  """
  (arrays,) = compute_clips([clip], opts, reference=reference)
  if isinstance(arrays, ClipError):
    raise arrays
  return arrays


def compute_clips(clips: list[Clip], opts: Options, *,
                  reference: bool = False
                  ) -> list[dict[str, np.ndarray] | ClipError]:
  """``compute_clip`` of several clips, their faces detected in shared
  batches (``faces.face_crops_many``); an unusable clip's entry is its
  ClipError."""
  out: list[Any] = []
  frames = []
  for clip in clips:
    try:
      spec, audio_rate = clip_spec(clip, opts.log_mel)
      frames.append(clip_frames(clip, opts.img_interval,
                                'opencv' if reference else 'pyav'))
      out.append({'spec': spec, 'audio_rate': np.int64(audio_rate)})
    except ClipError as e:
      out.append(e)
  ok = [i for i, a in enumerate(out) if not isinstance(a, ClipError)]
  kwargs = ({} if opts.min_face_size == faces.MIN_FACE_SIZE else
            {'min_face_size': opts.min_face_size})
  crops = faces.face_crops_many(frames, opts.face_detector,
                                reference=reference, **kwargs)
  for i, (faces_i, fallbacks) in zip(ok, crops):
    out[i] = {'faces': faces_i, 'spec': out[i]['spec'],
              'face_fallbacks': np.int64(fallbacks),
              'audio_rate': out[i]['audio_rate']}
  return out


def make_example(clip: Clip, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
  """The example dict of the data contract."""
  return {
      'clip_id': clip.clip_id,
      'text': clip.text,
      'labels': np.asarray(clip.labels, np.float32),
      'faces': arrays['faces'],
      'spec': arrays['spec'],
      'n_frames': int(arrays['faces'].shape[0]),
      'n_chunks': int(arrays['spec'].shape[0]),
      'face_fallbacks': int(arrays['face_fallbacks']),
  }


# -------------------------------------------------------------------- cache


def cache_path(cache_root: Path, clip_id: str) -> Path:
  safe = clip_id.replace(os.sep, '_')
  return cache_root / f'{safe}.npz'


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
  """Atomic write: a temporary file in the same folder, then os.replace."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{path.stem}.{os.getpid()}.tmp')
  try:
    with open(tmp, 'wb') as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
  """Cached arrays, or None when absent or unreadable (then recomputed)."""
  if not path.is_file():
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      if 'audio_rate' not in z.files:
        logging.log_first_n(
            logging.WARNING, 'Cache file %s (and maybe others) predates the '
            'resampling of audio to 16 kHz: recomputing', 1, path)
        return None
      arrays = {k: z[k] for k in _ARRAY_KEYS}
  except (OSError, ValueError, KeyError, EOFError) as e:
    logging.warning('Unreadable cache file %s (%s): recomputing', path, e)
    return None
  if arrays['faces'].ndim != 4 or arrays['spec'].ndim != 3:
    return None
  return arrays


def work(clip: Clip, opts: Options, path: str) -> tuple:
  """Worker task: compute + cache one clip -> ('ok', arrays) | ('skip', ...)."""
  try:
    arrays = compute_clip(clip, opts)
  except ClipError as e:
    return ('skip', e.reason, e.file, e.detail)
  except Exception as e:  # pylint: disable=broad-except
    return ('skip', 'error', clip.video_path or clip.audio_path,
            f'{type(e).__name__}: {e}')
  if arrays['faces'].shape[0] == 0:
    return ('skip', 'no_frames', clip.video_path or '', '')
  save_arrays(Path(path), arrays)
  return ('ok', arrays, (os.getpid(), faces.mtcnn_constructions))


# ----------------------------------------------------------------- parallel


def _init_worker(tf_threads: int) -> None:
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  faces.set_tf_threads(tf_threads)
  cv2.setNumThreads(1)


class _SharedPool:
  """One process pool reused across calls (the splits of one build).

  Workers are expensive to start (TensorFlow + MTCNN: seconds each), so the
  pool outlives an ``iter_examples`` call and is shut down after
  ``IDLE_SECONDS`` without use (or at exit).
  """
  IDLE_SECONDS = 60.0

  def __init__(self):
    self._lock = threading.Lock()
    self._pool, self._size, self._timer = None, 0, None
    atexit.register(self.shutdown)

  def acquire(self, num_workers: int) -> concurrent.futures.ProcessPoolExecutor:
    with self._lock:
      if self._timer is not None:
        self._timer.cancel()
        self._timer = None
      if self._pool is None or self._size != num_workers:
        if self._pool is not None:
          self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._size = _new_pool(num_workers), num_workers
      return self._pool

  def release(self) -> None:
    with self._lock:
      self._timer = threading.Timer(self.IDLE_SECONDS, self.shutdown)
      self._timer.daemon = True
      self._timer.start()

  def replace(self) -> concurrent.futures.ProcessPoolExecutor:
    """A fresh pool after a worker died (the old one is unusable)."""
    with self._lock:
      if self._pool is not None:
        self._pool.shutdown(wait=False, cancel_futures=True)
      self._pool = _new_pool(self._size)
      return self._pool

  def shutdown(self) -> None:
    with self._lock:
      if self._pool is not None:
        self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool, self._size = None, 0


def _new_pool(num_workers: int) -> concurrent.futures.ProcessPoolExecutor:
  # spawn: the parent may have TensorFlow loaded (TFDS), which is not
  # fork-safe.
  threads = max(1, (os.cpu_count() or 1) // num_workers)
  return concurrent.futures.ProcessPoolExecutor(
      max_workers=num_workers, mp_context=multiprocessing.get_context('spawn'),
      initializer=_init_worker, initargs=(threads,))


_POOL = _SharedPool()


def shutdown_workers() -> None:
  """Stops the worker processes now (they also stop after a minute idle)."""
  _POOL.shutdown()


def _ordered_results(clips: list[Clip], opts: Options, root: Path,
                     num_workers: int) -> Iterator[tuple[Clip, tuple, bool]]:
  """(clip, result, from_cache) for every clip, in order."""
  todo = [c for c in clips if not cache_path(root, c.clip_id).is_file()]
  if num_workers <= 1 or len(todo) <= 1:
    for clip in clips:
      yield cached_or_compute(clip, opts, root)
    return
  yield from _pooled(clips, opts, root, num_workers)


def cached_or_compute(clip: Clip, opts: Options,
                      root: Path) -> tuple[Clip, tuple, bool]:
  """(clip, result, from_cache): the cached arrays, else ``work`` here."""
  path = cache_path(root, clip.clip_id)
  arrays = load_arrays(path)
  if arrays is not None:
    return clip, ('ok', arrays), True
  return clip, work(clip, opts, str(path)), False


def _pooled(clips: list[Clip], opts: Options, root: Path,
            num_workers: int) -> Iterator[tuple[Clip, tuple, bool]]:
  window = 4 * num_workers
  pool = _POOL.acquire(num_workers)
  pending: collections.deque = collections.deque()
  queue = iter(clips)
  n_futures = 0
  try:
    while True:
      while n_futures < window:
        clip = next(queue, None)
        if clip is None:
          break
        path = cache_path(root, clip.clip_id)
        arrays = load_arrays(path)
        if arrays is not None:
          pending.append((clip, None, arrays))
        else:
          pending.append((clip, pool.submit(work, clip, opts, str(path)),
                          None))
          n_futures += 1
      if not pending:
        return
      clip, future, arrays = pending.popleft()
      if future is None:
        yield clip, ('ok', arrays), True
        continue
      n_futures -= 1
      try:
        result = future.result()
      except concurrent.futures.process.BrokenProcessPool:
        result = ('skip', 'worker_crashed', clip.video_path or '',
                  'a worker process died while this clip (or one processed '
                  'beside it) ran')
        pool = _POOL.replace()
        pending = collections.deque(
            (c, None if f is None else pool.submit(
                work, c, opts, str(cache_path(root, c.clip_id))), a)
            for c, f, a in pending)
      yield clip, result, False
  finally:
    for _, future, _ in pending:
      if future is not None:
        future.cancel()
    _POOL.release()


# ------------------------------------------------------------------ logging


class SkipLog:
  """Appends one JSON line per skipped clip to ``cache_dir/skipped.jsonl``."""

  def __init__(self, cache_dir: Path, dataset: str, split: str):
    self.path = cache_dir / SKIP_LOG
    self.dataset, self.split = dataset, split

  def write(self, skip: Skip) -> None:
    record = {'clip_id': skip.clip_id, 'reason': skip.reason,
              'file': skip.file, 'detail': skip.detail,
              'dataset': self.dataset, 'split': self.split,
              'time': time.strftime('%Y-%m-%dT%H:%M:%S')}
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(json.dumps(record) + '\n')


def read_skip_log(cache_dir: str | Path) -> list[dict]:
  """The records of ``cache_dir/skipped.jsonl`` (empty if none)."""
  path = Path(cache_dir) / SKIP_LOG
  if not path.is_file():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def write_summary(report: SkipReport, cache_dir: Path,
                  how: str = '') -> None:
  """A split's ``summary_<name>.json`` (and ``missing_<name>.txt``) in the
  cache dir, and the log lines that say what was skipped; ``how`` tags the
  summary line (e.g. ``'Beam'``)."""
  name = f'{report.dataset}_{report.split}'
  (cache_dir / f'summary_{name}.json').write_text(
      json.dumps(report.as_dict(), indent=1))
  if report.missing:
    (cache_dir / f'missing_{name}.txt').write_text(
        '\n'.join(report.missing) + '\n')
  log = logging.warning if report.skipped or report.missing else logging.info
  log('%s%s', report.summary(), f' ({how})' if how else '')
  if report.skipped:
    logging.warning('Skipped clips and why: %s', cache_dir / SKIP_LOG)
  if report.missing:
    logging.warning('%d ids of the %s split file are not in the data '
                    '(listed in %s), e.g. %s', len(report.missing),
                    report.split, cache_dir / f'missing_{name}.txt',
                    report.missing[:5])


# --------------------------------------------------------------- public API


def iter_examples(dataset: str, raw_dir: str | Path, split: str, *,
                  cache_dir: str | Path, img_interval: int = 500,
                  log_mel: bool = False, face_detector: str = 'mtcnn',
                  splits_dir: str | Path | None = None,
                  num_workers: int | None = None, progress: bool = True,
                  text_rule: str = 'last_colon',
                  report: SkipReport | None = None,
                  min_face_size: int = faces.MIN_FACE_SIZE
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields (clip_id, example) of one split, in split-file order.

  See the module docstring and docs/data.md.  ``text_rule`` is IEMOCAP's
  transcript rule ('last_colon': faithful quirk 6, 'full').  ``report`` (if
  given) is filled in with what the run did.  ``min_face_size``: opt-in
  MTCNN setting (``Options``).  Bad clips are skipped and logged, never
  raised.
  """
  if face_detector not in faces.DETECTORS:
    raise ValueError(f'face_detector must be one of {faces.DETECTORS}, got '
                     f'{face_detector!r}')
  if img_interval <= 0:
    raise ValueError(f'img_interval must be positive, got {img_interval}')
  t0 = time.time()
  cache_dir = Path(cache_dir)
  cache_dir.mkdir(parents=True, exist_ok=True)
  options = {'text_rule': text_rule} if dataset == 'iemocap' else {}
  found = readers.read_split(dataset, raw_dir, split, splits_dir=splits_dir,
                             **options)
  opts = Options(img_interval, log_mel, face_detector, min_face_size)
  root = cache_dir / opts.key(dataset, found.layout)
  root.mkdir(parents=True, exist_ok=True)
  report = report if report is not None else SkipReport()
  report.dataset, report.split, report.layout = dataset, split, found.layout
  report.in_split_file = (len(found.clips) + len(found.skipped) +
                          len(found.missing))
  report.missing = list(found.missing)
  skip_log = SkipLog(cache_dir, dataset, split)

  def skip(item: Skip) -> None:
    skip_log.write(item)
    report.skipped[item.reason] += 1
    report.skipped_ids.append(item.clip_id)

  for item in found.skipped:
    skip(item)
  workers = (os.cpu_count() or 1) if num_workers is None else num_workers
  bar = _progress_bar(len(found.clips), f'{dataset}/{split}', progress)
  try:
    for clip, result, cached in _ordered_results(found.clips, opts, root,
                                                 workers):
      bar.update(1)
      if result[0] == 'skip':
        skip(Skip(clip.clip_id, *result[1:]))
        bar.set_postfix(skipped=sum(report.skipped.values()), refresh=False)
        continue
      example = make_example(clip, result[1])
      if len(result) > 2:
        pid, built = result[2]
        report.mtcnn_per_process[pid] = built
      report.from_cache += int(cached)
      report.computed += int(not cached)
      report.yielded += 1
      report.face_frames += example['n_frames']
      report.face_fallbacks += example['face_fallbacks']
      if int(result[1]['audio_rate']) != audio.SAMPLE_RATE:
        report.resampled[int(result[1]['audio_rate'])] += 1
      yield clip.clip_id, example
  finally:
    bar.close()
    report.seconds = time.time() - t0
    write_summary(report, cache_dir)


def _progress_bar(total: int, desc: str, enabled: bool):
  return tqdm.tqdm(total=total, desc=desc, unit='clip', disable=not enabled,
                   dynamic_ncols=True, smoothing=0.1)


def build(dataset: str, raw_dir: str | Path, split: str, **kwargs
          ) -> SkipReport:
  """Preprocesses (caches) a whole split without keeping the examples."""
  report = SkipReport()
  for _ in iter_examples(dataset, raw_dir, split, report=report, **kwargs):
    pass
  return report


def main(argv: list[str] | None = None) -> None:
  """Command line: preprocess (cache) splits and print what it did."""
  p = argparse.ArgumentParser(
      prog='python -m data_pipelines.preprocess',
      description='Preprocess raw MOSEI / IEMOCAP clips into the per-clip '
      'cache (faces, mel chunks) that the TFDS builders read.')
  p.add_argument('--dataset', required=True, choices=readers.DATASETS)
  p.add_argument('--raw_dir', required=True)
  p.add_argument('--cache_dir', required=True)
  p.add_argument('--splits', default='train,valid,test')
  p.add_argument('--splits_dir', default=None)
  p.add_argument('--img_interval', type=int, default=500)
  p.add_argument('--log_mel', action='store_true')
  p.add_argument('--face_detector', default='mtcnn', choices=faces.DETECTORS)
  p.add_argument('--min_face_size', type=int, default=faces.MIN_FACE_SIZE,
                 help='MTCNN smallest face (px); other than 20 is faster but '
                 'changes the crops (docs/data.md)')
  p.add_argument('--num_workers', type=int, default=None)
  p.add_argument('--text_rule', default='last_colon',
                 choices=('last_colon', 'full'))
  args = p.parse_args(argv)
  logging.set_verbosity(logging.INFO)
  t0, clips, frames = time.time(), 0, 0
  for split in args.splits.split(','):
    report = build(args.dataset, args.raw_dir, split,
                   cache_dir=args.cache_dir, img_interval=args.img_interval,
                   log_mel=args.log_mel, face_detector=args.face_detector,
                   splits_dir=args.splits_dir, num_workers=args.num_workers,
                   text_rule=args.text_rule, min_face_size=args.min_face_size)
    print(report.summary(), flush=True)
    clips, frames = clips + report.computed, frames + report.face_frames
  shutdown_workers()
  dt = time.time() - t0
  print(f'{dt:.1f} s: {clips / dt:.2f} computed clips/s, {frames / dt:.1f} '
        'frames/s (frames include cached clips)')


if __name__ == '__main__':
  main()
