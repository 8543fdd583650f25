"""Checkpoints with orbax: the latest state (to resume) and the best state.

Two ``ocp.CheckpointManager``s under ``<workdir>/checkpoints``:

* ``latest/``: every ``checkpoint_every_steps`` steps inside an epoch and at
  the end of each epoch; keeps the newest ``keep_latest`` (config
  ``keep_checkpoints``, default 2).  Item ``state`` (params,
  optimiser state, BatchNorm statistics, step, dropout key; ``StandardSave``)
  and item ``meta`` (``JsonSave``: the data position ``epoch`` and
  ``step_in_epoch`` to continue from, best score so far, early-stop counter,
  positive weights, ...).
* ``best/``: the state with the best validation average F1, and in ``meta``
  the epoch, thresholds and metrics it reached.

orbax writes each step into a temporary directory and renames it when
complete (on ``gs://``, where there is no rename, it writes the step in
place and marks it complete with a ``commit_success.txt`` written last), so
a run killed at any moment leaves the previous checkpoint readable.  A
checkpoint that fails to restore anyway (a file truncated or lost later) is
reported by step and path, and the next older one is used.  Saves are
synchronous: the state is small, and the NaN check runs before each save.
"""

import contextlib
import io
import os
import time
from typing import Any, Dict, Optional, Tuple

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from data_pipelines import paths


def _manager(directory: epath.Path,
             max_to_keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory, options=options,
                               item_names=('state', 'meta'))


def _restore_args(target, part: bool):
  """The whole state into ``target``'s tree, or a part of it as numpy."""
  if not part:
    return ocp.args.StandardRestore(target)
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                          target)
  return ocp.args.PyTreeRestore(target, restore_args=as_numpy,
                                partial_restore=True)


class CheckpointError(ValueError):
  """No checkpoint of a manager could be restored."""


class Checkpoints:
  """The ``latest`` and ``best`` managers of one work directory."""

  def __init__(self, workdir: str, keep_latest: int = 2):
    root = paths.absolute(workdir) / 'checkpoints'
    self.latest = _manager(root / 'latest', max_to_keep=keep_latest)
    self.best = _manager(root / 'best', max_to_keep=1)
    self.notes = []  # what a restore skipped, for the run's log

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

  def _restore(self, manager, target, part: bool = False
               ) -> Optional[Tuple[Dict[str, Any], Dict]]:
    """The newest checkpoint that restores; older ones past a broken one.

    ``target``: the state's tree (arrays or ``jax.ShapeDtypeStruct``s); with
    ``part`` a subtree of it (e.g. the parameters alone), restored as numpy
    arrays.  Raises ``CheckpointError`` when checkpoints exist but none
    restores.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    failed = []
    for step in steps:
      # A broken checkpoint makes tensorstore's reader threads print asyncio
      # tracebacks ('Event loop is closed') while the restore fails; they
      # are kept from the user unless MESM_JAX_TRACEBACK is set.
      noise = io.StringIO()
      quiet = (contextlib.nullcontext() if os.environ.get('MESM_JAX_TRACEBACK')
               else contextlib.redirect_stderr(noise))
      try:
        with quiet:
          try:
            restored = manager.restore(step, args=ocp.args.Composite(
                state=_restore_args(target, part),
                meta=ocp.args.JsonRestore()))
          except Exception:
            time.sleep(1.0)  # let the failed read's threads finish, quietly
            raise
      except Exception as e:  # pylint: disable=broad-except
        # orbax raises many kinds (ValueError, OSError, tensorstore errors).
        first = (str(e).strip().splitlines() or [''])[0][:200]
        failed.append(f'step {step} in {manager.directory / str(step)} could '
                      f'not be restored ({type(e).__name__}: {first})')
        logging.warning('%s', failed[-1])
        continue
      self.notes += [f'{f}; using step {step}' for f in failed]
      return restored['state'], restored['meta']
    if failed:
      raise CheckpointError('no checkpoint in ' + str(manager.directory) +
                            ' can be restored:\n  ' + '\n  '.join(failed))
    return None

  def restore_latest(self, target):
    """``(state, meta)`` of the newest latest-state checkpoint, or None."""
    return self._restore(self.latest, target)

  def restore_best(self, target):
    return self._restore(self.best, target)

  def restore_part(self, kind: str, target):
    """``(part of the state, meta)`` of the newest 'best' or 'latest'
    checkpoint: only the leaves of ``target`` (a subtree of the state, e.g.
    params, BatchNorm statistics and step), as numpy arrays.  Use a fresh
    ``Checkpoints``: orbax keeps one handler per item and manager."""
    return self._restore(self.best if kind == 'best' else self.latest,
                         target, part=True)

  def best_meta(self) -> Optional[Dict[str, Any]]:
    step = self.best.latest_step()
    if step is None:
      return None
    return self.best.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))['meta']

  def close(self) -> None:
    self.latest.close()
    self.best.close()
