"""Optional: the per-clip preprocessing as an Apache Beam transform.

For the full MOSEI release (23k clips) a multi-machine build can pay off.
TFDS builds datasets with Beam when a builder's ``_generate_examples`` returns
a ``beam.PTransform`` instead of an iterator; the TFDS builder then runs with
a ``DownloadConfig(beam_runner=..., beam_options=...)``.  This module gives
that transform; it runs exactly the function ``iter_examples`` runs
(``preprocess.work`` behind the same per-clip cache), so a Beam build and a
local build share cached clips.

Apache Beam is NOT a dependency: ``pip install apache-beam`` to use this.
Importing this module never imports Beam; only ``examples_transform`` does.

Use from a TFDS builder::

  def _generate_examples(self, raw_dir, split, cache_dir, splits_dir):
    from data_pipelines import beam as dp_beam
    return dp_beam.examples_transform('mosei', raw_dir, split,
                                      cache_dir=cache_dir,
                                      splits_dir=splits_dir) | beam.Map(
                                          lambda kv: (kv[0], to_tfds(kv[1])))

Skipped clips are counted with Beam metrics (``skipped_<reason>``) and logged
by the workers; ``preprocess.iter_examples`` remains the place that writes
``skipped.jsonl`` and the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from absl import logging

from data_pipelines import preprocess
from data_pipelines import readers


def _import_beam():
  try:
    import apache_beam  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        'data_pipelines.beam needs Apache Beam, which mesm-jax does not '
        'install: pip install apache-beam (or build locally with '
        'preprocess.iter_examples, which uses every CPU core).') from e
  return apache_beam


def examples_transform(dataset: str, raw_dir: str | Path, split: str, *,
                       cache_dir: str | Path, img_interval: int = 500,
                       log_mel: bool = False, face_detector: str = 'mtcnn',
                       splits_dir: str | Path | None = None,
                       text_rule: str = 'last_colon'):
  """A PTransform (pipeline root -> PCollection of (clip_id, example))."""
  beam = _import_beam()
  options = {'text_rule': text_rule} if dataset == 'iemocap' else {}
  found = readers.read_split(dataset, raw_dir, split, splits_dir=splits_dir,
                             **options)
  opts = preprocess.Options(img_interval, log_mel, face_detector)
  root = Path(cache_dir) / opts.key(dataset, found.layout)
  root.mkdir(parents=True, exist_ok=True)
  do_fn = _clip_do_fn(beam)(opts, str(root))

  class _Examples(beam.PTransform):

    def expand(self, pipeline):
      return (pipeline
              | f'Clips_{split}' >> beam.Create(found.clips)
              | f'Reshuffle_{split}' >> beam.Reshuffle()
              | f'Preprocess_{split}' >> beam.ParDo(do_fn))

  return _Examples()


def _clip_do_fn(beam):
  """The DoFn class (built lazily: it subclasses a Beam class)."""

  class ClipDoFn(beam.DoFn):
    """One clip -> (clip_id, example); the MTCNN is built once per DoFn."""

    def __init__(self, opts: preprocess.Options, cache_root: str):
      super().__init__()
      self._opts, self._root = opts, cache_root

    def setup(self):
      if self._opts.face_detector == 'mtcnn':
        from data_pipelines import faces  # pylint: disable=g-import-not-at-top
        faces.get_mtcnn()

    def process(self, clip: readers.Clip):
      clip, result, _ = preprocess.cached_or_compute(clip, self._opts,
                                                     Path(self._root))
      if result[0] == 'skip':
        beam.metrics.Metrics.counter('mesm', f'skipped_{result[1]}').inc()
        logging.warning('Skipped clip %s: %s (%s) %s', clip.clip_id,
                        *result[1:])
        return
      yield clip.clip_id, preprocess.make_example(clip, result[1])

  return ClipDoFn


def describe() -> dict[str, Any]:
  """Whether Beam is importable here (for diagnostics)."""
  try:
    _import_beam()
    return {'beam': True}
  except ImportError as e:
    return {'beam': False, 'why': str(e)}
