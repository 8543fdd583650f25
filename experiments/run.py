"""Train and evaluate MESM / FE2E on CMU-MOSEI, IEMOCAP or the synthetic demo.

  python experiments/run.py --dataset mosei --top_p 0.5
  python experiments/run.py --dataset iemocap --model fe2e
  python experiments/run.py --dataset synthetic --workdir /tmp/demo

Every config field is a flag (``--help`` lists them); rerunning a command in
the same ``--workdir`` resumes it.  See docs/training.md.
"""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow loads

from mesm_jax.train import main  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  sys.exit(main.run())
