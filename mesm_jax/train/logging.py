"""What a run shows and writes: progress bars, the epoch table, summaries.

Only process 0 writes or prints.  Files in the work directory:
``metrics.jsonl`` (one JSON object per log point: training scalars every
``log_every_steps`` steps, all valid/test metrics at each epoch end;
``data_pipelines.paths.JsonLines``: appended locally, the object uploaded
again at each point on ``gs://``), TensorBoard event files under
``tensorboard/`` (tf.summary, which writes ``gs://`` itself).
"""

import sys
import time
from typing import Any, Dict, Optional, Sequence

from etils import epath
import jax
import numpy as np
import tqdm

from data_pipelines import paths
from mesm_jax.train import workdir


def is_main() -> bool:
  return jax.process_index() == 0


class RunLogger:
  """Scalars to ``metrics.jsonl`` and TensorBoard, lines to stdout."""

  def __init__(self, workdir: str, enabled: Optional[bool] = None):
    self.enabled = is_main() if enabled is None else enabled
    self.workdir = paths.as_path(workdir)
    self._metrics = paths.JsonLines(self.workdir / 'metrics.jsonl')
    self._tb = None
    if self.enabled:
      self.workdir.mkdir(parents=True, exist_ok=True)
      self._tb = _tensorboard_writer(self.workdir / 'tensorboard')

  def scalars(self, step: int, values: Dict[str, Any], **extra) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()
              if np.ndim(v) == 0 and v is not None}
    self._metrics.append({'step': int(step), **extra,
                          **workdir.to_jsonable(values)})
    if self._tb is not None:
      self._tb.scalars(int(step), values)

  def write(self, line: str) -> None:
    if self.enabled:
      tqdm.tqdm.write(line)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class _TensorBoard:
  """Scalars as TensorBoard event files (tf.summary)."""

  def __init__(self, tf, directory: epath.Path):
    self._tf = tf
    self._writer = tf.summary.create_file_writer(str(directory))

  def scalars(self, step: int, values: Dict[str, float]) -> None:
    with self._writer.as_default(step=step):
      for k, v in values.items():
        if np.isfinite(v):
          self._tf.summary.scalar(k, v)
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def _tensorboard_writer(directory: epath.Path) -> Optional[_TensorBoard]:
  """A writer, or None (with a warning) when TensorBoard is missing."""
  try:
    import tensorboard  # pylint: disable=g-import-not-at-top,unused-import
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    tqdm.tqdm.write('note: tensorboard is not installed; metrics go to '
                    'metrics.jsonl only (pip install tensorboard)')
    return None
  return _TensorBoard(tf, directory)


def progress(total: int, desc: str, initial: int = 0, leave: bool = True,
             outer: bool = False):
  """A tqdm bar on process 0, a silent stand-in elsewhere.

  An ``outer`` bar (one that holds others, e.g. over epochs) is shown on a
  terminal only: redirected to a file, nested bars write cursor-up codes
  (``[A``) into the log, and the epoch table already says how far it is.
  """
  shown = is_main() and (not outer or sys.stderr.isatty())
  return tqdm.tqdm(total=total, initial=initial, desc=desc, leave=leave,
                   disable=not shown, dynamic_ncols=True)


class Throughput:
  """Clips per second over the last interval."""

  def __init__(self):
    self._t, self._n = time.perf_counter(), 0

  def add(self, clips: int) -> None:
    self._n += clips

  def rate(self) -> float:
    now = time.perf_counter()
    rate = self._n / max(now - self._t, 1e-9)
    self._t, self._n = now, 0
    return rate


def table_header(headline: Sequence[str]) -> str:
  cols = ['epoch', 'train/loss', 'valid/loss']
  cols += [f'{s}/{m}/avg' for s in ('valid', 'test') for m in headline]
  return ' | '.join(f'{c:>16}' for c in cols) + ' | best'


def table_row(epoch: int, values: Dict[str, float], headline: Sequence[str],
              is_best: bool) -> str:
  cells = [f'{epoch:>16d}']
  keys = ['train/loss', 'valid/loss']
  keys += [f'{s}/{m}/avg' for s in ('valid', 'test') for m in headline]
  for k in keys:
    v = values.get(k)
    cells.append(f'{v:>16.4f}' if v is not None else f'{"-":>16}')
  return ' | '.join(cells) + (' | *' if is_best else ' |')


def format_metrics(values: Dict[str, Any], prefix: str) -> str:
  """Every metric of one split, one per line, named exactly."""
  keys = sorted(k for k in values if k.startswith(prefix))
  width = max((len(k) for k in keys), default=0)
  lines = []
  for k in keys:
    v = values[k]
    text = 'nan' if v is None or (isinstance(v, float) and np.isnan(v)) \
        else f'{v:.4f}' if isinstance(v, float) else str(v)
    lines.append(f'  {k:<{width}}  {text}')
  return '\n'.join(lines)
