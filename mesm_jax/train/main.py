"""Entry point behind ``experiments/run.py``: flags -> config -> one call.

Errors a user can fix (missing data or pretrained weights, a NaN loss, a bad
setting) are printed as one clear message without a traceback, exit code 1;
``MESM_JAX_TRACEBACK=1`` shows the traceback as well.
"""

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

USER_ERRORS = (FileNotFoundError, FloatingPointError, ValueError)


def default_workdir(config) -> str:
  """``workdirs/<dataset>-<model>-<modalities>-p<top_p>-seed<seed>``."""
  name = (f'{config.dataset}-{config.model}-{config.modalities}-'
          f'p{config.top_p:g}-seed{config.seed}')
  return str(Path('workdirs') / name)


def _quiet_tensorflow() -> None:
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # tf.data only: leave GPUs to JAX


def run(argv: Optional[Sequence[str]] = None) -> int:
  """Parse flags, train (or resume) or evaluate; returns the exit code."""
  _quiet_tensorflow()
  from mesm_jax.train import flags, loop  # pylint: disable=g-import-not-at-top
  config, _ = flags.parse(argv)
  with config.unlocked():
    config.workdir = config.workdir or default_workdir(config)
  loop.setup_distributed()
  try:
    if config.eval_only:
      loop.evaluate(config, config.workdir)
    else:
      loop.train_and_evaluate(config, config.workdir)
  except USER_ERRORS as e:
    if os.environ.get('MESM_JAX_TRACEBACK'):
      raise
    print(f'\nerror: {e}', file=sys.stderr)
    return 1
  return 0
