"""Kill -9 in the middle of an epoch, rerun: the same final metrics.

Three runs of ``experiments/run.py`` on a few synthetic clips (smoke widths,
scratch text encoder, one length bucket): A uninterrupted; B killed with
SIGKILL as soon as its first mid-epoch checkpoint is complete, then rerun with
the same command.  B's ``results.json`` must equal A's.  The subprocesses
share a JAX compilation cache so that only A pays for compiling.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ['--dataset', 'synthetic', '--synthetic_clips', '30',
        '--cnn_features', '4,8,8,16', '--cnn_fc_dim', '16', '--trans_dim', '8',
        '--trans_nlayers', '1', '--trans_nheads', '2', '--trans_ff_dim', '16',
        '--text_model', 'scratch', '--scratch_vocab_size', '64',
        '--scratch_text_dim', '16', '--scratch_text_layers', '1',
        '--scratch_text_heads', '2', '--scratch_text_ff_dim', '32',
        '--text_max_len', '12', '--max_frames', '1', '--max_chunks', '1',
        '--batch_size', '2', '--eval_batch_size', '4', '--epochs', '2',
        '--early_stop', '0', '--checkpoint_every_steps', '2',
        '--log_every_steps', '1', '--deterministic_input', 'true',
        '--lr', '1e-3', '--dropout', '0.1', '--face_detector', 'center']


def _env(tmp_path):
  return dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
              JAX_DISABLE_MOST_OPTIMIZATIONS='1',
              JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


def _command(tmp_path, workdir):
  return [sys.executable, str(ROOT / 'experiments' / 'run.py'), *TINY,
          '--data_dir', str(tmp_path / 'tfds'), '--workdir', str(workdir)]


def _run(tmp_path, workdir):
  proc = subprocess.run(_command(tmp_path, workdir), env=_env(tmp_path),
                        capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _complete_checkpoint(workdir: Path) -> bool:
  """A finished (renamed) step directory of the latest-state manager."""
  latest = workdir / 'checkpoints' / 'latest'
  return latest.is_dir() and any(p.name.isdigit() for p in latest.iterdir())


def _kill_after_first_checkpoint(tmp_path, workdir) -> bool:
  proc = subprocess.Popen(_command(tmp_path, workdir), env=_env(tmp_path),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          cwd=ROOT)
  deadline = time.time() + 600
  while not _complete_checkpoint(workdir):
    assert proc.poll() is None, 'run B ended before its first checkpoint'
    assert time.time() < deadline
    time.sleep(0.02)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  return (workdir / 'results.json').exists()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_gives_the_same_results(tmp_path):
  _run(tmp_path, tmp_path / 'a')
  finished_before_kill = _kill_after_first_checkpoint(tmp_path, tmp_path / 'b')
  assert not finished_before_kill
  rerun = _run(tmp_path, tmp_path / 'b')
  out = rerun.stdout + rerun.stderr
  assert 'resuming from' in out and 'step 2 of the epoch' in out, out[-2000:]
  a = json.loads((tmp_path / 'a' / 'results.json').read_text())
  b = json.loads((tmp_path / 'b' / 'results.json').read_text())
  assert a['best_epoch'] == b['best_epoch'] and a['epochs_run'] == 2
  assert a['thresholds'] == b['thresholds']
  assert set(a['metrics']) == set(b['metrics'])
  for key, value in a['metrics'].items():
    assert b['metrics'][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
