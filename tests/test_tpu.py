"""Compiling for Cloud TPU on a machine without one (libtpu, deviceless).

The run's own train and eval steps (``mesm_jax.train.aot``: the loop's
model, state, runner and step functions) are lowered and compiled by
libtpu's compiler for a v5e slice, through ``experiments/plan.py`` as a
user runs it; the planner's arithmetic (roofline, batch search) is checked
against hand-worked values.
"""

import pytest

from experiments import plan

pytest.importorskip('libtpu', reason='libtpu (the dev extra) compiles for TPU')

# Smoke widths, MESM (sort and gathers: the sparse path), its paper batch of
# 2 clips: on a v5e-4 slice 2 of the 4 chips run it, one clip each.
SMOKE = ['--dataset', 'synthetic', '--model', 'mesm', '--top_p', '0.5',
         '--cnn_features', '4,8,8,16', '--cnn_fc_dim', '16',
         '--trans_dim', '8', '--trans_nlayers', '1', '--trans_nheads', '2',
         '--trans_ff_dim', '16', '--text_model', 'scratch',
         '--scratch_vocab_size', '64', '--scratch_text_dim', '16',
         '--scratch_text_layers', '1', '--scratch_text_heads', '2',
         '--scratch_text_ff_dim', '32', '--text_max_len', '12',
         '--max_frames', '4', '--max_chunks', '4', '--batch_size', '2',
         '--eval_batch_size', '2']


@pytest.mark.slow
def test_train_and_eval_steps_compile_for_a_tpu_slice(capsys):
  rows = plan.main(SMOKE + ['--tpu', 'v5e-4', '--dtypes', 'float32',
                            '--batch_search', 'false'])
  (row,) = rows
  assert 'error' not in row, row.get('error')
  assert row['platform'] == 'tpu' and row['chip'] == 'TPU v5e'
  assert row['runner'] == 'pmap'                 # the config's default
  assert (row['chips'], row['chips_used'], row['per_chip_batch']) == (4, 2, 1)
  assert (row['frames'], row['chunks']) == (4, 4)
  hbm = 16 * 1024 ** 3
  for step in ('train', 'eval'):
    memory = row[step]['memory']
    assert 0 < memory['total'] <= hbm and row[step]['fits']
    assert memory['total'] == (memory['arguments'] + memory['outputs']
                               - memory['aliased'] + memory['temporaries']
                               + memory['code'])
  # The train step donates the state: its outputs are written over it.
  assert row['train']['memory']['aliased'] > 0
  assert row['eval']['memory']['aliased'] == 0
  # A backward pass costs about twice a forward pass: the train step's
  # FLOPs per clip are 2-4x the eval step's (measured: 2.7x).
  ratio = (row['train']['flops_per_clip'] / row['eval']['flops_per_clip'])
  assert 2.0 < ratio < 4.0
  # The same forward pass counted by flops.py on this CPU: XLA:TPU's count
  # of its program is higher than XLA:CPU's of its own (measured 1.38x here
  # and 1.49x for FE2E's forward pass alone at these widths; padded
  # convolution taps, which only the TPU counts, explain a seventh).
  tpu_over_cpu = (row['eval']['flops_per_clip']
                  / row['flops_py_forward_per_clip'])
  assert 1.0 < tpu_over_cpu < 1.6
  estimate = row['train']['estimate']
  assert estimate['roofline_s'] == max(estimate['compute_s'],
                                       estimate['memory_s']) > 0
  out = capsys.readouterr().out
  assert 'train step: compiles' in out and 'eval  step: compiles' in out
  assert 'estimate (not a measurement)' in out
  assert 'global batch 2 uses 2 of 4 chips' in out


def test_slices_have_the_cloud_tpu_shapes():
  # (chips, hosts, device kind) of each slice, as Cloud TPU sells them.
  want = {'v4-8': (4, 1, 'TPU v4'), 'v4-32': (16, 4, 'TPU v4'),
          'v5e-8': (8, 1, 'TPU v5 lite'), 'v5e-16': (16, 4, 'TPU v5 lite'),
          'v6e-8': (8, 1, 'TPU v6 lite'), 'v5litepod-8': (8, 1, 'TPU v5 lite')}
  for name, (chips, hosts, kind) in want.items():
    devices = plan.get_slice(name).devices()
    assert len(devices) == chips, name
    assert len({d.process_index for d in devices}) == hosts, name
    assert {d.device_kind for d in devices} == {kind}, name
  with pytest.raises(ValueError, match="unknown TPU slice 'v9-8'"):
    plan.get_slice('v9-8')


def test_roofline_bound_from_the_published_figures():
  v5e = plan.CHIPS['v5e']
  # 197e12 FLOP/s and 819e9 B/s: 1.97e12 FLOPs take 10 ms of compute,
  # 4.095e9 bytes 5 ms of HBM traffic; the bound is the larger.
  e = plan.roofline_seconds(1.97e12, 4.095e9, v5e)
  assert e['compute_s'] == pytest.approx(0.010)
  assert e['memory_s'] == pytest.approx(0.005)
  assert e['roofline_s'] == pytest.approx(0.010)
  assert plan.cost_model_seconds({'optimal_seconds': -3.9}) is None
  assert plan.cost_model_seconds({'optimal_seconds': 0.004}) == 0.004
  assert plan.cost_model_seconds({}) is None


def _memory(fixed, per_clip, hbm, compiled):
  """A step needing ``fixed + per_clip * b`` bytes; records the batches
  compiled; None (out of memory) above ``hbm``."""
  def fits(b):
    compiled.append(b)
    need = fixed + per_clip * b
    return need if need <= hbm else None
  return fits


def test_largest_batch_from_the_memory_line():
  # 1 GiB fixed + 0.5 GiB a clip in 16 GiB: 30 clips fit (16 GiB exactly),
  # 31 do not.  Compiles: 2 (the line), 30 (its prediction), 31 (not).
  gib, compiled = 1024 ** 3, []
  fits = _memory(gib, gib // 2, 16 * gib, compiled)
  got = plan.largest_batch(fits, 1, fits(1), 16 * gib)
  assert compiled == [1, 2, 30, 31]
  assert got == {'batch': 30, 'bytes': 16 * gib, 'exact': True,
                 'compiles': 3, 'predicted': None}
  # One compile allowed: the line's batch is reported as a prediction only.
  compiled.clear()
  got = plan.largest_batch(fits, 1, fits(1), 16 * gib, max_compiles=1)
  assert compiled == [1, 2]
  assert got['batch'] == 2 and got['predicted'] == 30 and not got['exact']


def test_largest_batch_bisects_when_the_line_misses():
  # The line through b = 1, 2 (1 GiB a clip) predicts 16 clips, but from
  # b = 6 on the need jumps (XLA may change its plan): bisection finds 5.
  gib, compiled = 1024 ** 3, []

  def fits(b):
    compiled.append(b)
    need = gib * b + (0 if b < 6 else 100 * gib)
    return need if need <= 16 * gib else None
  got = plan.largest_batch(fits, 1, gib, 16 * gib, max_compiles=6)
  assert got['batch'] == 5 and got['exact']
  assert compiled[:3] == [2, 16, 9]            # line, prediction, bisection
  assert got['compiles'] == len(compiled) <= 6
  # Out of compiles: the best confirmed batch, not claimed exact.
  short = plan.largest_batch(fits, 1, gib, 16 * gib, max_compiles=2)
  assert short['batch'] == 2 and not short['exact']


def test_largest_batch_when_twice_the_batch_does_not_fit():
  compiled = []
  fits = _memory(10, 6, 25, compiled)          # b=1 needs 16, b=2 needs 22
  assert plan.largest_batch(fits, 1, 16, 25)['batch'] == 2
  compiled.clear()
  fits = _memory(10, 10, 25, compiled)         # b=2 needs 30 > 25
  got = plan.largest_batch(fits, 1, 20, 25)
  assert got == {'batch': 1, 'bytes': 20, 'exact': True, 'compiles': 1,
                 'predicted': None}


def test_no_libtpu_warnings_on_a_machine_without_a_tpu():
  # The dev extra installs libtpu; on a machine with no TPU chip the entry
  # points leave JAX's TPU backend out, so libtpu prints nothing.
  import os, subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  code = ('from mesm_jax import platforms\n'
          'print(platforms.leave_out_absent_tpu())\n'
          'import jax\nprint(jax.default_backend())\n')
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, env=env, check=True)
  assert out.stdout.split() == ['True', 'cpu']
  assert 'TPU_WORKER_HOSTNAMES' not in out.stderr
  # Without it the same start prints libtpu's warnings: the check can fail.
  out = subprocess.run([sys.executable, '-c', 'import jax; jax.devices()'],
                       capture_output=True, text=True, env=env, check=True)
  assert 'TPU_WORKER_HOSTNAMES' in out.stderr
