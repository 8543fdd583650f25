"""Train and evaluate MESM / FE2E on CMU-MOSEI, IEMOCAP or the synthetic demo.

  python experiments/run.py --dataset mosei --top_p 0.5
  python experiments/run.py --dataset iemocap --model fe2e
  python experiments/run.py --dataset synthetic --workdir /tmp/demo

Every config field is a flag (``--help`` lists them); rerunning a command in
the same ``--workdir`` resumes it.  See docs/training.md.

This script adds two flags of its own (``script_flags``):
``--keep_freed_memory``, applied after the flags are parsed and before
TensorFlow and JAX load, and ``--prepare_only``, which builds the TFDS data
and stops.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # checkout

import argparse
import os
from typing import Optional, Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow loads

# pylint: disable=g-import-not-at-top
from experiments.perf import host_memory
from mesm_jax.train import flags
from mesm_jax.train import main
# pylint: enable=g-import-not-at-top


def script_flags() -> argparse.ArgumentParser:
  """This script's own flags, not config fields (``--help`` lists them)."""
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument(
      '--keep_freed_memory', type=flags.str2bool, nargs='?', const=True,
      default=False,
      help='CPU, glibc only: keep freed memory for reuse, so XLA:CPU\'s '
           'per-step scratch is not page-faulted in on every step: faster '
           'steps, more resident memory (experiments/perf/host_memory.py, '
           'docs/benchmarks.md)')
  parser.add_argument(
      '--prepare_only', type=flags.str2bool, nargs='?', const=True,
      default=False,
      help='build (or find) the TFDS data of this config and stop, without '
           'training (experiments/sweep.py runs it once before its cells)')
  return parser


def run(argv: Optional[Sequence[str]] = None) -> int:
  """Parse the flags, apply ``--keep_freed_memory``, train or evaluate."""
  config, args = flags.parse(argv, parents=[script_flags()])
  if args.keep_freed_memory:  # before the first computation
    host_memory.keep_freed_memory()
  if args.prepare_only:
    return main.prepare_data(config)
  return main.execute(config, args.workdir, args.eval_only)


if __name__ == '__main__':
  sys.exit(run())
