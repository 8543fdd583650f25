"""Two real processes x 2 CPU devices == one process x 4 devices, through a kill.

``experiments/run.py`` on a few synthetic clips (a tiny model, global
batches of 4, 2 epochs of 4 steps), two ways:

* A: one process with 4 CPU devices;
* B: two processes with 2 CPU devices each, ``jax.distributed`` through a
  coordinator on 127.0.0.1 (``JAX_COORDINATOR_ADDRESS`` /
  ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, read by
  ``loop.setup_distributed``), collectives between the processes by gloo.
  Both processes are killed with SIGKILL once the first mid-epoch checkpoint
  (step 2) is complete, then both started again with the same command (on a
  new coordinator port): B resumes from the orbax checkpoint both wrote.

Every host reads its own shard of each split (``tfds.split_for_jax_process``)
and shuffles it on its own, so a 2-host run sees other global batches than a
1-host run.  A is therefore given B's data: its ``Data`` is replaced (in the
subprocess, ``SCRIPT``) by one that reads both hosts' shards with
``process_count=2`` and concatenates their batches, host 0's clips first, the
order of B's devices.  Then every device of A gets the clips the same device
of B gets, and A and B differ only in how the sums over devices are added
(in one process or through gloo).

Checked: the training loss of every step (``metrics.jsonl``, written by
process 0 alone), before and after the kill, against A (``LOSS_RTOL``); the
final metrics and thresholds in ``results.json`` (``RTOL``); every valid and
test clip evaluated exactly once (``num_clips``); ``process_count`` 2.

Tolerances, measured (2026-12-02): the step losses of A and B agree to one
float32 ulp (1.2e-7 at 1.0; the gradient norms from the first step on to
about 1e-7 relative: the device sums are added in another order).  The
validation loss agrees to 2.7e-5 relative: Adam turns the rounding noise of
the near-zero gradients of biases right before BatchNorm into steps of about
``lr`` (see test_multidevice.py); BatchNorm cancels them in training, not
quite with the running statistics of evaluation.  F1, accuracies and
thresholds came out equal.

This is also the suite's kill-and-resume test: B, killed with SIGKILL in
the middle of an epoch and started again with the same command, must end
with A's (uninterrupted) losses and results.

The subprocesses share a JAX compilation cache.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest



ROOT = Path(__file__).resolve().parents[1]
# A tiny run: smoke widths, scratch text encoder, one length bucket, 30
# synthetic clips, global batches of 4 (2 hosts x 2 devices), 2 epochs, a
# checkpoint every 2 steps and a loss logged every step.
TINY = ['--dataset', 'synthetic', '--synthetic_clips', '30',
        '--cnn_features', '4,8,8,16', '--cnn_fc_dim', '16', '--trans_dim', '8',
        '--trans_nlayers', '1', '--trans_nheads', '2', '--trans_ff_dim', '16',
        '--text_model', 'scratch', '--scratch_vocab_size', '64',
        '--scratch_text_dim', '16', '--scratch_text_layers', '1',
        '--scratch_text_heads', '2', '--scratch_text_ff_dim', '32',
        '--text_max_len', '12', '--max_frames', '1', '--max_chunks', '1',
        '--batch_size', '4', '--eval_batch_size', '4', '--epochs', '2',
        '--early_stop', '0', '--checkpoint_every_steps', '2',
        '--log_every_steps', '1', '--deterministic_input', 'true',
        '--lr', '1e-3', '--dropout', '0.1', '--face_detector', 'center']
LOSS_RTOL = 1e-6            # step losses (measured: 1 ulp)
RTOL, ATOL = 1e-4, 1e-6     # results.json (measured: 2.7e-5, valid/loss)
TIMEOUT = 900

# Run A: one process, the batches of the 2-process run (see the docstring).
SCRIPT = '''
import sys
import numpy as np
from experiments import run
from mesm_jax.train import data as data_lib

Data = data_lib.Data


class TwoHostData(Data):
  """Both hosts' shards of a 2-host run, their batches side by side."""

  def __init__(self, config):
    super().__init__(config)
    self.hosts = [Data(config, i, 2) for i in range(2)]

  def train_batches(self, epoch, skip=0):
    parts = [h._dataset('train', True, self.config.batch_size, epoch, skip)
             for h in self.hosts]
    return data_lib.with_last(_joined(parts))

  def eval_batches(self, split, batch_size):
    return _joined([h._dataset(split, False, batch_size) for h in self.hosts])


def _joined(datasets):
  for parts in zip(*(ds.as_numpy_iterator() for ds in datasets)):
    yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


data_lib.Data = TwoHostData
sys.exit(run.run(sys.argv[1:]))
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(tmp_path, devices: int, **extra):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             JAX_DISABLE_MOST_OPTIMIZATIONS='1',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  for key in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES',
              'JAX_PROCESS_ID'):
    env.pop(key, None)
  env.update({k: str(v) for k, v in extra.items()})
  return env


def _flags(tmp_path, workdir):
  return [*TINY, '--data_dir', str(tmp_path / 'tfds'),
          '--workdir', str(workdir)]


def _check(proc):
  assert proc.returncode == 0, proc.stderr[-3000:]


def _start_two(tmp_path, workdir):
  """Processes 0 and 1 of a 2-host run, their output in workdir/proc*.log."""
  port = _free_port()
  workdir.mkdir(parents=True, exist_ok=True)
  procs = []
  for i in range(2):
    env = _env(tmp_path, 2, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
               JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=i)
    log = open(workdir / f'proc{i}.log', 'a')
    procs.append(subprocess.Popen(
        [sys.executable, str(ROOT / 'experiments' / 'run.py'),
         *_flags(tmp_path, workdir)], env=env, stdout=log,
        stderr=subprocess.STDOUT, cwd=ROOT))
    log.close()
  return procs


def _wait_two(procs, workdir):
  deadline = time.time() + TIMEOUT
  try:
    while any(p.poll() is None for p in procs):
      # One process failing leaves the other waiting for it in a collective.
      failed = [p for p in procs if p.poll() not in (None, 0)]
      assert not failed and time.time() < deadline, _logs(workdir)
      time.sleep(0.2)
  finally:
    _kill(procs)
  assert all(p.returncode == 0 for p in procs), _logs(workdir)


def _kill(procs):
  for p in procs:
    if p.poll() is None:
      os.kill(p.pid, signal.SIGKILL)
    p.wait()


def _logs(workdir) -> str:
  return '\n'.join(f'--- proc{i}:\n' + (workdir / f'proc{i}.log').read_text(
      errors='replace')[-3000:] for i in range(2))


def _complete_checkpoint(workdir: Path) -> bool:
  """A finished (renamed) step directory of the latest-state manager."""
  latest = workdir / 'checkpoints' / 'latest'
  return latest.is_dir() and any(p.name.isdigit() for p in latest.iterdir())


def _train_losses(workdir):
  rows = [json.loads(line) for line in
          (workdir / 'metrics.jsonl').read_text().splitlines()]
  train = [r for r in rows if 'train/loss' in r and 'valid/loss' not in r]
  return [r['step'] for r in train], [r['train/loss'] for r in train]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('multihost')
  times = {}
  # A builds the TFDS data (before B's two processes would both build it).
  start = time.time()
  a = subprocess.run([sys.executable, '-c', SCRIPT,
                      *_flags(tmp_path, tmp_path / 'a')],
                     env=_env(tmp_path, 4), capture_output=True, text=True,
                     timeout=TIMEOUT, cwd=ROOT)
  _check(a)
  times['a'] = time.time() - start
  # B: kill -9 both processes after the first mid-epoch checkpoint, rerun.
  start = time.time()
  b = tmp_path / 'b'
  procs = _start_two(tmp_path, b)
  deadline = time.time() + TIMEOUT
  try:
    while not _complete_checkpoint(b):
      assert all(p.poll() is None for p in procs), _logs(b)
      assert time.time() < deadline
      time.sleep(0.02)
  finally:
    _kill(procs[1:])   # one process first, then the other (left waiting)
    _kill(procs[:1])
  killed_before_end = not (b / 'results.json').exists()
  times['b_killed'] = time.time() - start
  _wait_two(_start_two(tmp_path, b), b)
  times['b'] = time.time() - start
  print(f'run times (s): {times}')
  return {'tmp': tmp_path, 'killed_before_end': killed_before_end,
          'times': times}


def _results(runs, name):
  return json.loads((runs['tmp'] / name / 'results.json').read_text())


@pytest.mark.slow
def test_two_processes_killed_and_restarted_train_like_one_process(runs):
  assert runs['killed_before_end']
  log = (runs['tmp'] / 'b' / 'proc0.log').read_text(errors='replace')
  assert 'resuming from' in log and 'step 2 of the epoch' in log, log[-2000:]
  steps_a, losses_a = _train_losses(runs['tmp'] / 'a')
  steps_b, losses_b = _train_losses(runs['tmp'] / 'b')
  assert steps_a == list(range(1, 9))  # 2 epochs of 4 steps (2 hosts x 10)
  # Process 0 alone logs: each step once, but step 3 twice if it was logged
  # before the kill (the rerun goes on from step 2).
  assert sorted(set(steps_b)) == steps_a, steps_b
  assert len(steps_b) - len(steps_a) <= 1 and steps_b[:2] == [1, 2], steps_b
  last_b = dict(zip(steps_b, losses_b))  # the rerun's value of a step
  np.testing.assert_allclose([last_b[s] for s in steps_a], losses_a,
                             rtol=LOSS_RTOL)
  if len(steps_b) > len(steps_a):   # step 3 before and after the kill
    first = losses_b[steps_b.index(3)]
    assert first == pytest.approx(last_b[3], rel=LOSS_RTOL)


@pytest.mark.slow
def test_two_processes_evaluate_every_clip_once_with_the_same_metrics(runs):
  a, b = _results(runs, 'a'), _results(runs, 'b')
  assert a['process_count'] == 1 and b['process_count'] == 2
  assert a['num_devices'] == b['num_devices'] == 4
  assert a['epochs_run'] == b['epochs_run'] == 2
  assert a['best_epoch'] == b['best_epoch']
  # Every clip of valid and test once (the synthetic 30: 21 / 4 / 5).
  for split, n in (('valid', 4), ('test', 5)):
    assert a['metrics'][f'{split}/num_clips'] == n, split
    assert b['metrics'][f'{split}/num_clips'] == n, split
  assert set(a['metrics']) == set(b['metrics'])
  for key, value in a['metrics'].items():
    if value is None:   # NaN is written as null (e.g. AUC of one class)
      assert b['metrics'][key] is None, key
      continue
    assert b['metrics'][key] == pytest.approx(
        value, rel=RTOL, abs=ATOL, nan_ok=True), key
  for key, value in a['thresholds'].items():
    assert b['thresholds'][key] == pytest.approx(value, abs=ATOL), key
