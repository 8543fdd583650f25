"""Train and evaluate MESM / FE2E on CMU-MOSEI, IEMOCAP or the synthetic demo.

  python experiments/run.py --dataset mosei --top_p 0.5
  python experiments/run.py --dataset iemocap --model fe2e
  python experiments/run.py --dataset synthetic --workdir /tmp/demo

Every config field is a flag (``--help`` lists them); rerunning a command in
the same ``--workdir`` resumes it.  See docs/training.md.

``--keep_freed_memory`` (CPU, glibc only; this script's own flag) makes glibc
keep freed memory for reuse, so XLA:CPU's per-step scratch is not page-faulted
in on every step: faster steps for more resident memory
(``experiments/perf/host_memory.py``, docs/benchmarks.md).
"""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow loads

from experiments.perf import host_memory  # pylint: disable=g-import-not-at-top
from mesm_jax.train import main  # pylint: disable=g-import-not-at-top

FLAG = '--keep_freed_memory'


def _split_memory_flag(argv):
  """(True if ``--keep_freed_memory`` was given, the other arguments)."""
  keep = any(a == FLAG or a in (FLAG + '=true', FLAG + '=1') for a in argv)
  rest = [a for a in argv if not a.startswith(FLAG)]
  return keep, rest


if __name__ == '__main__':
  keep, argv = _split_memory_flag(sys.argv[1:])
  if keep:  # before the first computation
    host_memory.keep_freed_memory()
  sys.exit(main.run(argv))
