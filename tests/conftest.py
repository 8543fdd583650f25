"""Shared pytest fixtures (kept minimal)."""

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

# The suite runs on the CPU.  With libtpu installed (the dev extra: TPU
# compilation in test_tpu.py) jax would otherwise probe for a TPU first.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')  # libtpu's lock file

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = Path(__file__).resolve().parents[1]

# Test files that share a session fixture (tiny_sweep) run on one worker.
SAME_WORKER = {'test_baselines_train': 'test_sweep'}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
  """Under pytest-xdist (setup.cfg: ``-n 2 --dist loadgroup``) each test
  file is one group, run whole on one worker: module fixtures (a trained
  model, a built dataset) are made once, as without xdist."""
  for item in items:
    module = getattr(item, 'module', None)
    name = (module.__name__.rpartition('.')[2] if module is not None
            else item.nodeid.split('::')[0])
    item.add_marker(pytest.mark.xdist_group(SAME_WORKER.get(name, name)))


@pytest.fixture
def fast_compile():
  """Opt-in: cheaper XLA compiles for tests that build whole models.

  Use with ``pytestmark = pytest.mark.usefixtures('fast_compile')``; the
  previous setting is restored after each test.
  """
  old = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', old)


# ------------------------------------------------- the tiny synthetic sweep
# experiments/sweep.py on the synthetic_tiny grid (FE2E and MESM, 2 seeds,
# 1 epoch), killed and resumed: test_sweep checks the sweep, the baselines'
# table test puts its FE2E and MESM rows beside the baselines'.


def _sweep_command(tmp_path, *extra):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             JAX_DISABLE_MOST_OPTIMIZATIONS='1',
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  command = [sys.executable, str(ROOT / 'experiments' / 'sweep.py'),
             '--grid', 'synthetic_tiny', '--workdirs',
             str(tmp_path / 'workdirs'), '--data_dir', str(tmp_path / 'tfds'),
             '--parallel', '2', *extra]
  return command, env


def _sweep(tmp_path, *extra):
  command, env = _sweep_command(tmp_path, *extra)
  proc = subprocess.run(command, env=env, capture_output=True, text=True,
                        timeout=1200)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _kill_after(tmp_path, root, done: int, timeout=900):
  """Starts the sweep; SIGKILLs it and its cells once ``done`` cells have
  finished (logged in ``sweep_runs.jsonl``); returns those cells."""
  command, env = _sweep_command(tmp_path)
  proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + timeout
  runs = root / 'sweep_runs.jsonl'
  try:
    while not (runs.is_file() and len(runs.read_text().splitlines()) >= done):
      assert proc.poll() is None, 'the sweep ended before it was killed'
      assert time.time() < deadline, 'the first cells did not finish'
      time.sleep(0.2)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  return [json.loads(l)['cell'] for l in runs.read_text().splitlines()]


@pytest.fixture(scope='session')
def tiny_sweep(tmp_path_factory):
  """Runs the tiny sweep, SIGKILLs it after 2 cells, runs it again.

  Returns what happened: ``root`` (the grid's workdirs), ``logged`` (cells
  logged before the kill), ``finished`` / ``left`` (cells with / without
  flops.json after it), ``stamps`` (results.json mtimes of the finished
  ones before the rerun), ``second`` (the rerun's output), ``listed``
  (``--list`` afterwards).
  """
  from experiments import grids  # pylint: disable=g-import-not-at-top
  tmp_path = tmp_path_factory.mktemp('tiny_sweep')
  root = tmp_path / 'workdirs' / 'synthetic_tiny'
  cells = [c.name for c in grids.expand(grids.GRIDS['synthetic_tiny'])]
  logged = _kill_after(tmp_path, root, done=2)
  finished = [c for c in cells if (root / c / 'flops.json').is_file()]
  left = [c for c in cells if c not in finished]
  stamps = {c: (root / c / 'results.json').stat().st_mtime_ns
            for c in finished}
  second = _sweep(tmp_path)
  listed = _sweep(tmp_path, '--list')
  return types.SimpleNamespace(root=root, logged=logged, finished=finished,
                               left=left, stamps=stamps, second=second,
                               listed=listed)
