"""experiments/perf/accelerator_bench.py runs where TensorFlow is not installed.

The script is made for accelerator images that hold JAX, flax, optax, chex,
numpy and ml_collections only; here it runs one smoke-width variant in a
process in which importing TensorFlow (or TFDS) fails, on the CPU.
"""

import json
import os
import subprocess
import sys

import pytest

from experiments.perf import accelerator_bench
from mesm_jax import input_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = '''
import json, sys
sys.modules['tensorflow'] = None          # any import of them fails
sys.modules['tensorflow_datasets'] = None
from experiments.perf import accelerator_bench as bench
print(json.dumps(bench.run_variant('iemocap', 'mesm', 'gathered', 'smoke',
                                   repeats=2, warmup=0)))
'''


@pytest.mark.slow
def test_a_train_step_is_timed_without_tensorflow():
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_DISABLE_MOST_OPTIMIZATIONS='1',
             PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', CHILD], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  row = json.loads(out.stdout.strip().splitlines()[-1])
  # The paper's MESM batch of 2 at IEMOCAP's p, on this CPU's one device,
  # clips shaped like the typical IEMOCAP clip's bucket.
  assert (row['model'], row['impl'], row['top_p']) == ('mesm', 'gathered',
                                                       0.7)
  assert (row['batch'], row['devices'], row['platform']) == (2, 1, 'cpu')
  assert (row['frames'], row['chunks']) == (12, 16)
  assert row['step_s'] > 0 and row['compile_s'] > 0
  assert row['clips_per_s'] == pytest.approx(2 / row['step_s'])
  assert row['loss'] > 0


def test_buckets_are_those_of_the_typical_clips():
  # The typical clip (frames, chunks) falls in this bucket of the caps.
  from experiments.perf import compute  # pylint: disable=g-import-not-at-top
  import mesm_jax  # pylint: disable=g-import-not-at-top
  for dataset, bucket in accelerator_bench.BUCKETS.items():
    config = mesm_jax.get_config(dataset)
    shapes = input_pipeline.bucket_shapes(config.max_frames,
                                          config.max_chunks)
    clip = compute.CLIPS[dataset]
    fits = [s for s in shapes
            if s[0] >= clip['frames'] and s[1] >= clip['chunks']]
    assert bucket == fits[0], dataset
