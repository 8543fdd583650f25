"""Padding efficiency and throughput of the tf.data pipeline (``measure``).

  python experiments/perf/benchmark.py --sections pipeline   (uses it)

How much of each batch is real data (frames, chunks, clips over the padded
slots) and how fast ``mesm_jax.input_pipeline.make_dataset`` produces batches.
"""

from __future__ import annotations

import time
from typing import Any

from absl import logging
import ml_collections
import numpy as np

from mesm_jax import input_pipeline


def measure(config: ml_collections.ConfigDict, split: str, num_batches: int | None = None,
            *, train: bool = False, **kwargs) -> dict[str, Any]:
  """Padding efficiency and throughput of ``make_dataset`` over some batches.

  Args:
    config: a mesm_jax config.
    split: the split to read.
    num_batches: batches to read (None: the whole epoch).
    train: measure the train pipeline (shuffle, drop remainder) or eval.
    **kwargs: passed to make_dataset.

  Returns:
    clips, batches, frame/chunk/clip counts (real and padded slots),
    efficiencies (real / slots), batch shapes seen, batches_per_s and
    clips_per_s (timed after the first batch, which pays the start-up).
  """
  ds = input_pipeline.make_dataset(config, split, train=train, **kwargs)
  if num_batches is not None:
    ds = ds.take(num_batches)
  counts = dict(batches=0, clips=0, clip_slots=0, frames=0, frame_slots=0,
                chunks=0, chunk_slots=0)
  shapes, start, timed_clips = set(), None, 0
  for batch in ds.as_numpy_iterator():
    if start is None:
      start = time.perf_counter()
    else:
      timed_clips += int(batch['clip_mask'].sum())
    _count_batch(batch, counts, shapes)
  elapsed = time.perf_counter() - start if start else 0.0
  timed = counts['batches'] - 1
  result = dict(counts, shapes=sorted(shapes),
                frame_efficiency=_ratio(counts['frames'], counts['frame_slots']),
                chunk_efficiency=_ratio(counts['chunks'], counts['chunk_slots']),
                clip_efficiency=_ratio(counts['clips'], counts['clip_slots']),
                batches_per_s=_ratio(timed, elapsed),
                clips_per_s=_ratio(timed_clips, elapsed))
  logging.info('input pipeline %s/%s: %s', config.dataset, split, result)
  return result


def _count_batch(batch: dict[str, np.ndarray], counts: dict[str, int],
                 shapes: set[tuple[int, ...]]) -> None:
  counts['batches'] += 1
  counts['clips'] += int(batch['clip_mask'].sum())
  counts['clip_slots'] += batch['clip_mask'].size
  counts['frames'] += int(batch['face_mask'].sum())
  counts['frame_slots'] += batch['face_mask'].size
  counts['chunks'] += int(batch['spec_mask'].sum())
  counts['chunk_slots'] += batch['spec_mask'].size
  shapes.add((batch['faces'].shape[1], batch['spec'].shape[1]))


def _ratio(a: float, b: float) -> float:
  return float(a) / b if b else 0.0
