"""host_memory.keep_freed_memory: XLA:CPU's scratch stops being page-faulted.

Each case runs in its own Python process (the allocator settings are
process-wide) and counts the minor page faults of repeated calls of a jitted
function with ~100 MiB of scratch.
"""

import json
import os
import subprocess
import sys

import pytest

from experiments.perf import host_memory

SCRIPT = r'''
import json, resource, sys
from experiments.perf import host_memory
applied = host_memory.keep_freed_memory() if sys.argv[1] == '1' else False
import jax, jax.numpy as jnp

@jax.jit
def f(x):
  a = jnp.cumsum(jnp.sin(x))
  b = jnp.cumsum(jnp.cos(x))
  return (a + b[::-1]).sum() + (a * b).max()

x = jnp.ones((2**23,))
temp = f.lower(x).compile().memory_analysis().temp_size_in_bytes
faults = []
for _ in range(20):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(dict(applied=applied, temp=temp, faults=faults)))
'''

pytestmark = pytest.mark.skipif(
    host_memory._glibc() is None,  # pylint: disable=protected-access
    reason='mallopt needs glibc')


def _run(keep: bool, env_value=None):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop(host_memory.ENV, None)
  if env_value is not None:
    env[host_memory.ENV] = env_value
  out = subprocess.run([sys.executable, '-c', SCRIPT, '1' if keep else '0'],
                       env=env, capture_output=True, text=True, check=True,
                       timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def plain():
  """Default glibc: every call faults (most of) its scratch in again."""
  run = _run(False)
  assert not run['applied']
  assert run['temp'] / 4096 > 10_000  # ~100 MiB of scratch, or no signal
  if sorted(run['faults'][4:])[8] < 0.5 * run['temp'] / 4096:
    pytest.skip(f'this libc/kernel already reuses scratch: {run}')
  return run


def test_scratch_is_reused_instead_of_faulted_in(plain):
  kept = _run(True)
  assert kept['applied']
  # Most calls fault nothing in.  A few still do: the heap grows by a
  # scratch-sized block when a call allocates before the last one's scratch
  # is freed, until it holds enough blocks.
  steady = sorted(kept['faults'][4:])
  assert steady[len(steady) // 2] < 0.02 * kept['temp'] / 4096, kept
  assert sum(steady) < 0.5 * sum(plain['faults'][4:]), (plain, kept)


def test_environment_variable_turns_it_off(plain):
  off = _run(True, env_value='0')
  assert not off['applied']
  assert sum(off['faults'][4:]) > 0.8 * sum(plain['faults'][4:]), off
