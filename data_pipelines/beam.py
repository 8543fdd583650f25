"""Optional: the per-clip preprocessing as an Apache Beam transform.

For the full MOSEI release (23k clips) a multi-machine build can pay off.
TFDS builds a dataset with Beam when a builder's ``_generate_examples``
returns a ``beam.PTransform`` instead of an iterator; the TFDS builders here
(``data_pipelines.tfds.base.E2EBuilder``) do so when they are built with Beam
pipeline options (``DownloadConfig(beam_options=...)``, ``tfds build
--beam_pipeline_options ...``), else they run ``preprocess.iter_examples``.

The transform runs exactly the per-clip function of the local build
(``preprocess.cached_or_compute``: ``preprocess.work`` behind the same
per-clip cache, ``<cache>/<key>/<clip id>.npz``), so a Beam build continues
from the clips an interrupted build (Beam or local) cached, and a local
rebuild reuses the clips Beam computed.

The report of a run (what ``preprocess.iter_examples`` logs and writes: the
skip log ``skipped.jsonl``, ``summary_<dataset>_<split>.json``) is the same:
every clip's outcome (cached / computed / skipped and why) goes to a side
output, which one worker writes as a JSON file into the cache dir; after the
pipeline, ``Examples.finish`` reads it back on the launching machine and
writes the skip log and the summary exactly as the local build does, in
split-file order.  Skipped clips are also counted in Beam metrics
(``mesm/skipped_<reason>``, ``mesm/computed``, ``mesm/from_cache``).

Apache Beam is NOT a dependency: ``pip install -e '.[beam]'`` to use this.
Importing this module never imports Beam; only ``examples_transform`` does.
The cache dir and the raw files must be reachable under the same paths by
every worker (a shared file system for a multi-machine run; docs/data.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import threading
import time
from typing import Any, Callable
import uuid

from absl import logging

from data_pipelines import audio
from data_pipelines import faces
from data_pipelines import preprocess
from data_pipelines import readers

REPORT_TAG = 'report'
# The per-process MTCNN of ``faces`` and the PyAV decoder are not safe for
# two Beam worker threads at once (seen: TensorFlow crashing or hanging, a
# segfault in the PyAV decode): a process computes one clip at a time; run
# one worker process per core (Dataflow's default for Python; DirectRunner:
# direct_running_mode=multi_processing).  Clips from the cache are not held.
_COMPUTE_LOCK = threading.Lock()

# (clip_id, preprocessed example) -> the example written (e.g. TFDS tokens).
Convert = Callable[[str, dict[str, Any]], dict[str, Any]]


def import_beam():
  """apache_beam, or an ImportError saying how to install it."""
  try:
    import apache_beam  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        'Building with Apache Beam needs apache-beam, which mesm-jax does not '
        "install by default: pip install apache-beam (or pip install -e "
        "'.[beam]'); or build locally, without Beam options "
        '(preprocess.iter_examples uses every CPU core).') from e
  return apache_beam


def examples_transform(dataset: str, raw_dir: str | Path, split: str, *,
                       cache_dir: str | Path, img_interval: int = 500,
                       log_mel: bool = False, face_detector: str = 'mtcnn',
                       splits_dir: str | Path | None = None,
                       text_rule: str = 'last_colon',
                       convert: Convert | None = None):
  """A PTransform: pipeline root -> PCollection of (clip_id, example).

  The arguments are those of ``preprocess.iter_examples`` (the split is
  listed here, on the launching machine); ``convert`` (picklable) turns each
  preprocessed example into the one written, on the workers.  Call
  ``.finish()`` on the returned transform after the pipeline ran: it writes
  the skip log and summary and returns the ``preprocess.SkipReport``.
  """
  beam = import_beam()
  if face_detector not in faces.DETECTORS:
    raise ValueError(f'face_detector must be one of '
                     f'{faces.DETECTORS}, got {face_detector!r}')
  if img_interval <= 0:
    raise ValueError(f'img_interval must be positive, got {img_interval}')
  cache_dir = Path(cache_dir)
  options = {'text_rule': text_rule} if dataset == 'iemocap' else {}
  found = readers.read_split(dataset, raw_dir, split, splits_dir=splits_dir,
                             **options)
  opts = preprocess.Options(img_interval, log_mel, face_detector)
  root = cache_dir / opts.key(dataset, found.layout)
  root.mkdir(parents=True, exist_ok=True)
  report_path = cache_dir / (f'.beam_report_{dataset}_{split}_'
                             f'{uuid.uuid4().hex[:12]}.json')
  do_fn = _clip_do_fn(beam)(opts, str(root), convert)

  class _Examples(beam.PTransform, Examples):
    """The transform (Beam part) + its report (``Examples``)."""

    def __init__(self):
      beam.PTransform.__init__(self)
      Examples.__init__(self, dataset, split, found, cache_dir, report_path)

    def expand(self, pipeline):
      indexed = list(enumerate(found.clips))
      outputs = (pipeline
                 | f'Clips_{split}' >> beam.Create(indexed)
                 | f'Reshuffle_{split}' >> beam.Reshuffle()
                 | f'Preprocess_{split}' >> beam.ParDo(do_fn).with_outputs(
                     REPORT_TAG, main='examples'))
      _ = (outputs[REPORT_TAG]
           | f'CollectReport_{split}' >> beam.combiners.ToList()
           | f'WriteReport_{split}' >> beam.Map(_write_json,
                                                str(report_path)))
      return outputs.examples

  return _Examples()


class Examples:
  """What a Beam build of one split read and did (Beam-free part)."""

  def __init__(self, dataset: str, split: str, found: readers.SplitClips,
               cache_dir: Path, report_path: Path):
    self.dataset, self.split, self.found = dataset, split, found
    self.cache_dir, self.report_path = cache_dir, report_path
    self.started = time.time()

  def finish(self) -> preprocess.SkipReport:
    """After the pipeline: the report, skip log and summary of the split.

    The same as ``preprocess.iter_examples`` writes for a local build: the
    reader's skips first, then the clips' in split-file order.
    """
    records = json.loads(self.report_path.read_text())
    by_index = {r['index']: r for r in records}
    if len(by_index) != len(self.found.clips):
      raise RuntimeError(
          f'Beam build of {self.dataset}/{self.split}: {len(by_index)} clip '
          f'outcomes in {self.report_path}, expected {len(self.found.clips)}')
    found = self.found
    report = preprocess.SkipReport(
        dataset=self.dataset, split=self.split, layout=found.layout,
        in_split_file=(len(found.clips) + len(found.skipped) +
                       len(found.missing)),
        missing=list(found.missing))
    skip_log = preprocess.SkipLog(self.cache_dir, self.dataset, self.split)

    def skip(item: readers.Skip) -> None:
      skip_log.write(item)
      report.skipped[item.reason] += 1
      report.skipped_ids.append(item.clip_id)

    for item in found.skipped:
      skip(item)
    for i in range(len(found.clips)):
      r = by_index[i]
      if r['status'] == 'skip':
        skip(readers.Skip(r['clip_id'], r['reason'], r['file'], r['detail']))
        continue
      report.from_cache += int(r['status'] == 'cached')
      report.computed += int(r['status'] == 'computed')
      report.yielded += 1
      report.face_frames += r['n_frames']
      report.face_fallbacks += r['face_fallbacks']
      if r['audio_rate'] != audio.SAMPLE_RATE:
        report.resampled[r['audio_rate']] += 1
      if r.get('mtcnn'):
        pid, built = r['mtcnn']
        report.mtcnn_per_process[pid] = built
    report.seconds = time.time() - self.started
    preprocess.write_summary(report, self.cache_dir, how='Beam')
    self.report_path.unlink()
    return report


def _write_json(records: list[dict], path: str) -> None:
  """Atomic write (the launching machine reads it after the pipeline)."""
  records = sorted(records, key=lambda r: r['index'])
  tmp = f'{path}.{os.getpid()}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(records, f)
  os.replace(tmp, path)


def clip_outcome(index: int, clip: readers.Clip, result: tuple,
                 cached: bool) -> dict[str, Any]:
  """The JSON record of one clip's ``cached_or_compute`` result."""
  if result[0] == 'skip':
    reason, file, detail = result[1:]
    return {'index': index, 'clip_id': clip.clip_id, 'status': 'skip',
            'reason': reason, 'file': file, 'detail': detail}
  arrays = result[1]
  return {'index': index, 'clip_id': clip.clip_id,
          'status': 'cached' if cached else 'computed',
          'n_frames': int(arrays['faces'].shape[0]),
          'face_fallbacks': int(arrays['face_fallbacks']),
          'audio_rate': int(arrays['audio_rate']),
          'mtcnn': list(result[2]) if len(result) > 2 else None}


def _clip_do_fn(beam):
  """The DoFn class (built lazily: it subclasses a Beam class)."""

  class ClipDoFn(beam.DoFn):
    """(index, clip) -> (clip_id, example); MTCNN built once per DoFn."""

    def __init__(self, opts: preprocess.Options, cache_root: str,
                 convert: Convert | None):
      super().__init__()
      self._opts, self._root, self._convert = opts, cache_root, convert

    def setup(self):
      if self._opts.face_detector == 'mtcnn':
        with _COMPUTE_LOCK:
          faces.get_mtcnn()

    def process(self, element):
      index, clip = element
      root = Path(self._root)
      # Cached clips need no lock; a clip is computed under the process's
      # lock (cached_or_compute reads the cache again first).
      arrays = preprocess.load_arrays(preprocess.cache_path(root,
                                                            clip.clip_id))
      if arrays is not None:
        result, cached = ('ok', arrays), True
      else:
        with _COMPUTE_LOCK:
          clip, result, cached = preprocess.cached_or_compute(
              clip, self._opts, root)
      yield beam.pvalue.TaggedOutput(
          REPORT_TAG, clip_outcome(index, clip, result, cached))
      if result[0] == 'skip':
        beam.metrics.Metrics.counter('mesm', f'skipped_{result[1]}').inc()
        logging.warning('Skipped clip %s: %s (%s) %s', clip.clip_id,
                        *result[1:])
        return
      beam.metrics.Metrics.counter(
          'mesm', 'from_cache' if cached else 'computed').inc()
      example = preprocess.make_example(clip, result[1])
      if self._convert is not None:
        example = self._convert(clip.clip_id, example)
      yield clip.clip_id, example

  return ClipDoFn


def pipeline_options(options: str | Any | None):
  """Beam ``PipelineOptions`` from 'k=v,k=v' (None / '' -> None)."""
  if options is None or options == '':
    return None
  if not isinstance(options, str):
    return options                    # already PipelineOptions
  beam = import_beam()
  flags = [f'--{o.strip()}' for o in options.split(',') if o.strip()]
  return beam.options.pipeline_options.PipelineOptions(flags=flags)


def describe() -> dict[str, Any]:
  """Whether Beam is importable here (for diagnostics)."""
  try:
    import_beam()
    return {'beam': True}
  except ImportError as e:
    return {'beam': False, 'why': str(e)}

