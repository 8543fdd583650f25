"""Entry point behind ``experiments/run.py``: flags -> config -> one call.

``run(argv)`` parses the flags (``flags.parse``) and calls ``execute``, which
trains (or resumes) or evaluates.  Only the flags are imported at the top:
``--help`` and a mistyped flag answer before TensorFlow and JAX load (both
take seconds); ``execute`` imports the training loop.

Errors a user can fix (missing data or pretrained weights, a NaN loss, a bad
setting) are printed as one clear message without a traceback, exit code 1;
``MESM_JAX_TRACEBACK=1`` shows the traceback as well.
"""

import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from mesm_jax.train import flags

USER_ERRORS = (FileNotFoundError, FloatingPointError, ValueError)


def default_workdir(config) -> str:
  """``workdirs/<dataset>-<model>-<modalities>-p<top_p>-seed<seed>``."""
  name = (f'{config.dataset}-{config.model}-{config.modalities}-'
          f'p{config.top_p:g}-seed{config.seed}')
  return str(Path('workdirs') / name)


def _quiet_tensorflow() -> None:
  """Before TensorFlow and JAX start: their expected start-up noise off."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow loads
  from mesm_jax import platforms  # pylint: disable=g-import-not-at-top
  platforms.leave_out_absent_tpu()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # tf.data only: leave GPUs to JAX


def execute(config, workdir: str = '', eval_only: bool = False) -> int:
  """Train (or resume) ``config`` in ``workdir``, or evaluate; the exit code.

  Args:
    config: the run's config (``flags.parse``).
    workdir: the work directory; '' = ``default_workdir(config)``.
    eval_only: evaluate the work directory's best checkpoint instead.
  """
  _quiet_tensorflow()
  # Imported here, after the flags are parsed: it loads TensorFlow and JAX.
  from mesm_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = workdir or default_workdir(config)
  loop.setup_distributed()
  if eval_only:
    return _exit_code(loop.evaluate, config, workdir)
  return _exit_code(loop.train_and_evaluate, config, workdir)


def _exit_code(fn: Callable[..., Any], *args) -> int:
  """0 after ``fn(*args)``; 1 after a user error, printed as one line
  (its traceback too with ``MESM_JAX_TRACEBACK=1``)."""
  try:
    fn(*args)
  except USER_ERRORS as e:
    if os.environ.get('MESM_JAX_TRACEBACK'):
      raise
    print(f'\nerror: {e}', file=sys.stderr)
    return 1
  return 0


def prepare_data(config) -> int:
  """Build (or find) ``config``'s TFDS data and stop; the exit code.

  What ``experiments/run.py --prepare_only`` runs: the preprocessing alone,
  e.g. on a CPU machine before training elsewhere, or once before a sweep
  starts its runs in parallel.
  """
  _quiet_tensorflow()
  # pylint: disable=g-import-not-at-top
  from mesm_jax.train import data
  return _exit_code(lambda: data.build(config))  # as training builds it


def run(argv: Optional[Sequence[str]] = None) -> int:
  """Parse the flags, then ``execute``; returns the exit code."""
  config, args = flags.parse(argv)
  return execute(config, args.workdir, args.eval_only)
