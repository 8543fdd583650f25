"""Loss, optimiser, the loop's state and one epoch through the real pipeline.

The flags and configs are tested in tests/test_flags.py.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import compile_settings

import mesm_jax
from mesm_jax.train import checkpoint as ckpt_lib
from mesm_jax.train import flags, loop, main, optim, parallel

# ---------------------------------------------------------------- loss, optim


def test_pos_weight_is_negatives_over_positives_and_guards_zero():
  rng = np.random.default_rng(0)
  labels = (rng.random((37, 6)) < 0.3).astype(np.float32)
  labels[:, 5] = 0                                    # no positive clip
  got = optim.pos_weight_from_labels([labels[:20], labels[20:]])
  pos = labels.sum(0)
  expected = np.where(pos > 0, (37 - pos) / np.maximum(pos, 1), 1.0)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got[5] == 1.0


def test_weighted_bce_matches_the_formula_and_masks_padding():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 6)).astype(np.float32) * 3
  labels = (rng.random((4, 6)) < 0.5).astype(np.float32)
  w = rng.uniform(0.5, 5, size=6).astype(np.float32)
  s = 1 / (1 + np.exp(-logits.astype(np.float64)))
  # BCEWithLogitsLoss(pos_weight=w): -(w y log s + (1 - y) log(1 - s))
  ref = -(w * labels * np.log(s) + (1 - labels) * np.log(1 - s))
  np.testing.assert_allclose(optim.weighted_bce(logits, labels, w), ref,
                             rtol=1e-5)
  mask = np.array([True, True, False, True])
  total, count = optim.masked_loss_sum(logits, labels, w, mask)
  np.testing.assert_allclose(total, ref[mask].sum(), rtol=1e-5)
  assert count == 3 * 6


def _opt_config(**kw):
  base = dict(lr=1e-3, text_lr_factor=10.0, weight_decay=0.0, clip_grad=0.0)
  return ml_collections.ConfigDict({**base, **kw})


def test_text_encoder_and_head_train_at_lr_over_text_lr_factor():
  """The original's slow group: ALBERT and the text classifier t_out."""
  params = {'text_encoder': {'w': jnp.ones(3)}, 'text_head': {'w': jnp.ones(3)},
            'visual_head': {'w': jnp.ones(3)}}
  grads = {'text_encoder': {'w': jnp.full(3, 0.5)},
           'text_head': {'w': jnp.full(3, 3.0)},
           'visual_head': {'w': jnp.full(3, -2.0)}}
  tx = optim.make_optimizer(_opt_config(), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first update is -lr * g / (|g| + eps) = -lr * sign(g).
  np.testing.assert_allclose(updates['visual_head']['w'], 1e-3, rtol=1e-4)
  np.testing.assert_allclose(updates['text_encoder']['w'], -1e-4, rtol=1e-4)
  np.testing.assert_allclose(updates['text_head']['w'], -1e-4, rtol=1e-4)


def _reference_adam(params, grads_per_step, *, lr, text_lr_factor,
                    weight_decay, clip_grad, b1=0.9, b2=0.999, eps=1e-8):
  """The rule of ``make_optimizer`` in float64 numpy, step by step.

  Clip the whole gradient to global norm ``clip_grad``; add
  ``weight_decay * param``; Adam with bias correction, at
  ``lr / text_lr_factor`` under ``text_encoder`` and ``text_head``, ``lr``
  elsewhere.
  Returns the update of every step.
  """
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  updates = []
  for t, grads in enumerate(grads_per_step, 1):
    g = {k: np.asarray(x, np.float64) for k, x in grads.items()}
    norm = np.sqrt(sum(np.sum(x ** 2) for x in g.values()))
    if clip_grad > 0 and norm > clip_grad:
      g = {k: x * clip_grad / norm for k, x in g.items()}
    step = {}
    for k in p:
      d = g[k] + weight_decay * p[k]
      m[k] = b1 * m[k] + (1 - b1) * d
      v[k] = b2 * v[k] + (1 - b2) * d ** 2
      m_hat, v_hat = m[k] / (1 - b1 ** t), v[k] / (1 - b2 ** t)
      rate = lr / text_lr_factor if k in ('text_encoder', 'text_head') else lr
      step[k] = -rate * m_hat / (np.sqrt(v_hat) + eps)
    p = {k: p[k] + step[k] for k in p}
    updates.append(step)
  return updates


def test_make_optimizer_follows_clip_decay_adam_and_text_lr():
  f32 = lambda *v: np.array(v, np.float32)
  params = {'text_encoder': f32(1.0, -2.0, 0.5),
            'visual_head': f32(0.3, 3.0, -1.0)}
  grads = [  # global norms ~51 (clipped to 1) and ~0.4 (not clipped)
      {'text_encoder': f32(30.0, -10.0, 2.0),
       'visual_head': f32(-40.0, 5.0, 1.0)},
      {'text_encoder': f32(0.1, 0.2, -0.3),
       'visual_head': f32(0.05, -0.1, 0.1)},
  ]
  settings = dict(lr=1e-2, text_lr_factor=10.0, weight_decay=0.05,
                  clip_grad=1.0)
  tx = optim.make_optimizer(_opt_config(**settings), params)
  state = tx.init(params)
  current = params
  expected = _reference_adam(params, grads, **settings)
  for g, want in zip(grads, expected):
    got, state = tx.update(g, state, current)
    for k in params:
      np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-9)
    current = optax.apply_updates(current, got)
  # The test sees each part of the rule: without clipping, with no decay or
  # with one learning rate the reference gives other second updates.
  for change in (dict(clip_grad=0.0), dict(weight_decay=0.0),
                 dict(text_lr_factor=1.0)):
    other = _reference_adam(params, grads, **{**settings, **change})[1]
    assert any(not np.allclose(other[k], expected[1][k], rtol=1e-3)
               for k in params), change


def test_check_finite_raises_with_a_clear_message(tmp_path):
  class Ctx:
    class ckpts:  # pylint: disable=invalid-name
      class latest:  # pylint: disable=invalid-name
        directory = tmp_path
        latest_step = staticmethod(lambda: 4)
  ok = [{'loss': np.float32(0.5)}]
  assert loop.check_finite(ok, 5, Ctx)[0]['loss'] == 0.5
  with pytest.raises(FloatingPointError, match=r'nan at step 7.*step 4'):
    loop.check_finite(ok + [{'loss': np.float32(np.nan)}], 7, Ctx)


def test_best_checkpoint_rule_is_valid_f1_then_valid_loss():
  assert loop.is_better([0.5, -0.3], None)
  assert loop.is_better([0.6, -0.9], [0.5, -0.1])       # F1 decides
  assert not loop.is_better([0.4, -0.01], [0.5, -0.9])
  assert loop.is_better([1.0, -0.1], [1.0, -0.2])       # tie: lower loss
  assert not loop.is_better([1.0, -0.2], [1.0, -0.2])   # equal: not better


# ---------------------------------------------------------------- loop state


class FakeDevice:
  def __init__(self, id_, process_index=0, platform='cpu'):
    self.id, self.process_index, self.platform = id_, process_index, platform

  def __repr__(self):
    return f'd{self.id}@{self.process_index}'


def test_eval_batch_is_fitted_to_the_devices_in_the_loop_not_the_config():
  config = ml_collections.FrozenConfigDict(
      {'batch_size': 6, 'eval_batch_size': 4, 'parallel': 'pmap'})
  notes = []

  class Log:
    def write(self, line):
      notes.append(line)

  devices = [FakeDevice(i) for i in range(4)]
  used, eval_batch_size = loop.fit_batch_sizes(config, Log(), devices)
  # 3 of 4 devices divide the batch of 6; 4 eval clips round up to 6.
  assert used == devices[:3] and eval_batch_size == 6
  assert config.eval_batch_size == 4
  assert notes == ['note: global batch 6 uses 3 of 4 local devices per host']


def test_devices_of_every_host_listed_host_by_host():
  # 2 hosts x 4 devices, listed out of order: a batch of 4 is 2 per host.
  devices = [FakeDevice(i, process_index=i % 2) for i in range(8)]
  used, eval_batch, note = parallel.fit_batches(devices, 4, 5)
  assert [(d.id, d.process_index) for d in used] == [(0, 0), (2, 0), (1, 1),
                                                     (3, 1)]
  assert eval_batch == 8 and 'uses 2 of 4' in note
  used, eval_batch, note = parallel.fit_batches(devices, 8, 8)
  assert len(used) == 8 and eval_batch == 8 and note == ''
  with pytest.raises(ValueError, match='divisible by the 2 processes'):
    parallel.fit_batches(devices, 3, 4)


def test_run_state_round_trips_through_the_checkpoint_json():
  run = loop.RunState(pos_weight=[1.5, 2.0], epoch=3, step_in_epoch=7,
                      best_score=[0.5, -0.2], best_epoch=2, bad_epochs=1)
  saved = json.loads(json.dumps(run.to_json()))
  assert loop.RunState.from_json(saved) == run
  # A checkpoint written before steps_per_epoch existed still loads.
  del saved['steps_per_epoch']
  assert loop.RunState.from_json(saved).steps_per_epoch is None


# ---------------------------------------------------------------- main


def test_missing_real_data_is_a_clear_error_without_traceback(tmp_path, capsys):
  code = main.run(['--dataset', 'mosei', '--data_dir', str(tmp_path / 'tfds'),
                   '--raw_dir', str(tmp_path / 'nothing'),
                   '--workdir', str(tmp_path / 'w')])
  err = capsys.readouterr().err
  assert code == 1
  assert 'No data for mosei_e2e' in err and str(tmp_path / 'nothing') in err
  assert 'Traceback' not in err


# ---------------------------------------------------------------- one epoch


def tiny_config(tmp_path, **overrides) -> ml_collections.ConfigDict:
  """Smoke widths on a few synthetic clips ('center' faces, scratch text)."""
  c = mesm_jax.get_config('smoke')
  c.dataset = 'synthetic'
  c.data_dir = str(tmp_path / 'tfds')
  c.epochs = 1
  c.max_frames = c.max_chunks = 1   # one length bucket: one compile
  c.batch_size = 2
  c.eval_batch_size = 4
  c.checkpoint_every_steps = 3
  c.log_every_steps = 2
  c.lr = 1e-3
  c.deterministic_input = True
  with c.unlocked():
    c.synthetic_clips = 12
  c.update(overrides)
  return c


@pytest.fixture(scope='module')
def one_epoch(tmp_path_factory):
  """One epoch of the tiny config through the real pipeline (fast compiles),
  run as ``run.py --config my_config.py``: ``(tmp, config, given,
  results)``, ``given`` the config as the file holds it."""
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top
  tmp = tmp_path_factory.mktemp('one_epoch')
  # Fast compiles, kept on disk for this module: the killed and resumed runs
  # below compile the same programs again and read them from the cache.
  with compile_settings.jax_settings(
      jax_disable_most_optimizations=True,
      jax_compilation_cache_dir=str(tmp / 'jax_cache'),
      jax_persistent_cache_min_compile_time_secs=0,
      jax_persistent_cache_min_entry_size_bytes=0):
    compilation_cache.reset_cache()   # re-read the settings at next compile
    config = tiny_config(tmp)
    given = config.to_dict()
    # Through the command line, the config as a file of one's own (--config).
    path = tmp / 'my_config.py'
    path.write_text(f'def get_config():\n  return {given!r}\n')
    assert main.run(['--config', str(path), '--workdir',
                     str(tmp / 'work')]) == 0
    results = json.loads((tmp / 'work' / 'results.json').read_text())
    yield tmp, config, given, results
  compilation_cache.reset_cache()


@pytest.mark.slow
def test_one_epoch_through_the_real_pipeline(one_epoch):
  tmp_path, config, given, results = one_epoch
  workdir = tmp_path / 'work'
  on_disk = json.loads((workdir / 'results.json').read_text())
  # Nothing wrote into the config: results.json holds the one given.
  assert config.to_dict() == given
  assert on_disk['config'] == json.loads(json.dumps(given))
  assert on_disk['best_epoch'] == 1 and on_disk['epochs_run'] == 1
  metrics = on_disk['metrics']
  for split in ('valid', 'test'):
    for name in ('mosei_wacc', 'f1', 'acc', 'precision', 'recall'):
      for key in ('anger', 'surprise', 'avg'):
        assert 0.0 <= metrics[f'{split}/{name}/{key}'] <= 1.0
    assert metrics[f'{split}/num_clips'] >= 1
    assert np.isfinite(metrics[f'{split}/loss'])
  assert set(on_disk['thresholds']) == {'anger', 'disgust', 'fear',
                                        'happiness', 'sadness', 'surprise'}
  assert all(t in np.round(np.arange(1, 20) * 0.05, 2)
             for t in on_disk['thresholds'].values())
  assert results['metrics'] == metrics
  lines = [json.loads(l) for l in
           (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert any('train/loss' in l and np.isfinite(l['train/loss']) for l in lines)
  assert any('test/f1/avg' in l for l in lines)
  assert (workdir / 'checkpoints' / 'best').is_dir()
  assert list((workdir / 'tensorboard').iterdir())
  _check_self_contained_workdir(config, workdir, metrics)


def _check_self_contained_workdir(config, workdir, metrics):
  """The workdir's own config serves eval and resume; a broken checkpoint
  is skipped for the previous one."""
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved == json.loads(json.dumps(config.to_dict()))
  with pytest.raises(SystemExit):   # a width the checkpoints do not have
    flags.parse(['--workdir', str(workdir), '--trans_dim', '64'])
  with pytest.raises(ValueError, match='trans_dim'):
    loop.train_and_evaluate(tiny_config(workdir.parent, trans_dim=64),
                            str(workdir))
  # Two latest checkpoints are kept; truncate a file of the newest one.
  latest = workdir / 'checkpoints' / 'latest'
  steps = sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit())
  assert len(steps) == 2
  def truncate(step):
    biggest = max((p for p in (latest / str(step)).rglob('*') if p.is_file()),
                  key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:biggest.stat().st_size // 2])

  truncate(steps[-1])
  ckpts = ckpt_lib.Checkpoints(str(workdir))
  restored = ckpts.restore_latest(None)
  assert restored is not None and int(restored[0]['step']) == steps[0]
  assert any(f'step {steps[-1]}' in n and f'using step {steps[0]}' in n
             for n in ckpts.notes)
  ckpts.close()
  truncate(steps[0])   # no latest checkpoint restores now
  with pytest.raises(ckpt_lib.CheckpointError, match=f'step {steps[0]}'):
    ckpt_lib.Checkpoints(str(workdir)).restore_latest(None)
  # --eval_only with no flag repeated (smoke widths and data come from
  # config.json) uses the best checkpoint, whatever happened to the latest.
  assert main.run(['--workdir', str(workdir), '--eval_only']) == 0
  # The best checkpoint evaluates to the numbers of the training run.
  evaluated = json.loads((workdir / 'eval_results.json').read_text())
  for k in ('valid/f1/avg', 'test/f1/avg', 'test/mosei_wacc/avg',
            'test/f1/anger'):
    assert evaluated['metrics'][k] == pytest.approx(metrics[k], abs=1e-6), k


class _Killed(Exception):
  """What a kill leaves: the run stops right after a checkpoint is written."""


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_metrics(one_epoch, tmp_path,
                                                           monkeypatch, capsys):
  """Stopped right after the mid-epoch checkpoint at step 3, then run
  again: it goes on from step 3 with the same data order and ends with the
  uninterrupted run's metrics and thresholds."""
  data_tmp, _, _, want = one_epoch
  config = tiny_config(data_tmp)       # the same data dir: no second build
  workdir = tmp_path / 'killed'
  real_save = loop.save_latest

  def save_then_die(ctx, state, run):
    real_save(ctx, state, run)
    raise _Killed

  monkeypatch.setattr(loop, 'save_latest', save_then_die)
  with pytest.raises(_Killed):
    loop.train_and_evaluate(config, str(workdir))
  assert not (workdir / 'results.json').exists()
  monkeypatch.setattr(loop, 'save_latest', real_save)
  capsys.readouterr()
  loop.train_and_evaluate(config, str(workdir))
  assert 'step 3 of the epoch' in capsys.readouterr().out
  resumed = json.loads((workdir / 'results.json').read_text())
  assert resumed['best_epoch'] == want['best_epoch'] == 1
  assert resumed['thresholds'] == want['thresholds']
  assert set(resumed['metrics']) == set(want['metrics'])
  for key, value in want['metrics'].items():
    if value is None:                  # NaN (e.g. one class in a split)
      assert resumed['metrics'][key] is None, key
    else:                              # the same program and data order
      assert resumed['metrics'][key] == pytest.approx(value, rel=1e-6,
                                                      abs=1e-7), key


@pytest.mark.parametrize('chips,env,calls', [
    (4, {}, [{}]),                        # a Cloud TPU VM: jax reads the rest
    (0, {}, []),                          # a plain machine: one process
    (0, {'SLURM_NTASKS': '2'}, [{}]),
    (0, {'JAX_COORDINATOR_ADDRESS': 'h:1234', 'JAX_NUM_PROCESSES': '2',
         'JAX_PROCESS_ID': '1'}, [{'num_processes': 2, 'process_id': 1}]),
])
def test_setup_distributed_on_tpu_vms_and_clusters(monkeypatch, chips, env,
                                                   calls):
  for name in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES',
               'JAX_PROCESS_ID', 'TPU_WORKER_HOSTNAMES', 'SLURM_NTASKS',
               'OMPI_COMM_WORLD_SIZE'):
    monkeypatch.delenv(name, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  seen = []
  monkeypatch.setattr(loop.platforms, 'cloud_tpu_chips', lambda: chips)
  monkeypatch.setattr(loop.jax.distributed, 'is_initialized', lambda: False)
  monkeypatch.setattr(loop.jax.distributed, 'initialize',
                      lambda **kw: seen.append(kw))
  monkeypatch.setattr(loop.jax.config, 'update', lambda *a: None)
  loop.setup_distributed()
  assert seen == calls
