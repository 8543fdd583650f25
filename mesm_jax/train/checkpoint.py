"""Checkpoints with orbax: the latest state (to resume) and the best state.

Two ``ocp.CheckpointManager``s under ``<workdir>/checkpoints``:

* ``latest/``: every ``checkpoint_every_steps`` steps inside an epoch and at
  the end of each epoch; keeps the newest one.  Item ``state`` (params,
  optimiser state, BatchNorm statistics, step, dropout key; ``StandardSave``)
  and item ``meta`` (``JsonSave``: the data position ``epoch`` and
  ``step_in_epoch`` to continue from, best score so far, early-stop counter,
  positive weights, ...).
* ``best/``: the state with the best validation average F1, and in ``meta``
  the epoch, thresholds and metrics it reached.

orbax writes each step into a temporary directory and renames it when
complete, so a run killed at any moment leaves the previous checkpoint
readable.  Saves are synchronous: the state is small, and the NaN check runs
before each save.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import orbax.checkpoint as ocp


def _manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory, options=options,
                               item_names=('state', 'meta'))


class Checkpoints:
  """The ``latest`` and ``best`` managers of one work directory."""

  def __init__(self, workdir: str):
    root = Path(workdir).absolute() / 'checkpoints'
    self.latest = _manager(root / 'latest', max_to_keep=1)
    self.best = _manager(root / 'best', max_to_keep=1)

  @staticmethod
  def _save(manager, step: int, state: Dict[str, Any], meta: Dict[str, Any]):
    if step in manager.all_steps():  # same step saved again (rerun of epoch)
      manager.delete(step)
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                 force=True)
    manager.wait_until_finished()

  def save_latest(self, step: int, state, meta) -> None:
    self._save(self.latest, step, state, meta)

  def save_best(self, step: int, state, meta) -> None:
    self._save(self.best, step, state, meta)

  @staticmethod
  def _restore(manager, target) -> Optional[Tuple[Dict[str, Any], Dict]]:
    step = manager.latest_step()
    if step is None:
      return None
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return restored['state'], restored['meta']

  def restore_latest(self, target):
    """``(state, meta)`` of the newest latest-state checkpoint, or None."""
    return self._restore(self.latest, target)

  def restore_best(self, target):
    return self._restore(self.best, target)

  def best_meta(self) -> Optional[Dict[str, Any]]:
    step = self.best.latest_step()
    if step is None:
      return None
    return self.best.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))['meta']

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def to_jsonable(x: Any) -> Any:
  """numpy values -> plain Python; NaN/inf -> None (strict JSON)."""
  if isinstance(x, dict):
    return {str(k): to_jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return to_jsonable(x.tolist())
  if isinstance(x, np.generic):
    x = x.item()
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x


def write_json_atomic(path: str, obj: Any) -> None:
  """Write JSON to a temporary file beside ``path``, then rename it."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  with os.fdopen(fd, 'w') as f:
    json.dump(to_jsonable(obj), f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
