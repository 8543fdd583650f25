"""Loss, optimiser, flags and a one-epoch run through the real pipeline."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import mesm_jax
from mesm_jax.train import flags, loop, main, optim

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


def test_text_encoder_trains_at_lr_over_text_lr_factor():
  params = {'text_encoder': {'w': jnp.ones(3)}, 'visual_head': {'w': jnp.ones(3)}}
  grads = {'text_encoder': {'w': jnp.full(3, 0.5)},
           'visual_head': {'w': jnp.full(3, -2.0)}}
  tx = optim.make_optimizer(_opt_config(), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first update is -lr * g / (|g| + eps) = -lr * sign(g).
  np.testing.assert_allclose(updates['visual_head']['w'], 1e-3, rtol=1e-4)
  np.testing.assert_allclose(updates['text_encoder']['w'], -1e-4, rtol=1e-4)


def test_clipping_and_weight_decay():
  params = {'a': jnp.array([3.0, 4.0])}
  grads = {'a': jnp.array([30.0, 40.0])}             # global norm 50
  tx = optim.make_optimizer(_opt_config(clip_grad=1.0, lr=1.0), params)
  clip = optax.clip_by_global_norm(1.0)
  clipped, _ = clip.update(grads, clip.init(params))
  np.testing.assert_allclose(clipped['a'], [0.6, 0.8], rtol=1e-6)
  assert tx.update(grads, tx.init(params), params)[0]['a'].shape == (2,)
  # L2 weight decay as torch.optim.Adam: g + wd * p enters Adam.  With g = 0
  # the first update is -lr * sign(p).
  tx = optim.make_optimizer(_opt_config(weight_decay=0.1), params)
  updates, _ = tx.update({'a': jnp.zeros(2)}, tx.init(params), params)
  np.testing.assert_allclose(updates['a'], [-1e-3, -1e-3], rtol=1e-4)


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


# ---------------------------------------------------------------- flags


def test_card_command_parses_to_the_papers_mosei_settings():
  config, _ = flags.parse(['--dataset', 'mosei', '--top_p', '0.5'])
  assert config.dataset == 'mosei' and config.top_p == 0.5
  assert config.model == 'mesm' and config.batch_size == 2
  assert config.lr == 5e-5 and config.text_lr_factor == 10
  assert config.early_stop == 6 and config.epochs == 40
  fe2e, _ = flags.parse(['--dataset', 'iemocap', '--model', 'fe2e'])
  assert fe2e.batch_size == 8 and fe2e.top_p == 0.7
  given, _ = flags.parse(['--dataset', 'iemocap', '--model=fe2e',
                          '--batch_size=4'])
  assert given.batch_size == 4


def test_every_config_field_is_a_flag():
  base = mesm_jax.get_config('mosei')
  parser = flags.build_parser(base)
  names = {a.dest for a in parser._actions}  # pylint: disable=protected-access
  assert set(base.keys()) <= names
  config, _ = flags.parse(['--dataset', 'mosei', '--cnn_features', '8,16,16,32',
                           '--log_mel', 'true', '--eval_only', '--modalities',
                           'tv', '--trans_nheads', '2', '--parallel',
                           'shard_map'])
  assert config.cnn_features == (8, 16, 16, 32)
  assert config.log_mel is True and config.eval_only is True
  assert config.modalities == 'tv' and config.trans_nheads == 2
  with pytest.raises(SystemExit):
    flags.parse(['--dataset', 'mosei', '--modalities', 'xyz'])


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


@pytest.mark.usefixtures('fast_compile')
def test_one_epoch_through_the_real_pipeline(tmp_path):
  config = tiny_config(tmp_path)
  workdir = tmp_path / 'work'
  results = loop.train_and_evaluate(config, str(workdir))
  on_disk = json.loads((workdir / 'results.json').read_text())
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
  assert on_disk['config']['model'] == 'mesm'
  assert results['metrics'] == metrics
  lines = [json.loads(l) for l in
           (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert any('train/loss' in l and np.isfinite(l['train/loss']) for l in lines)
  assert any('test/f1/avg' in l for l in lines)
  assert (workdir / 'checkpoints' / 'best').is_dir()
  assert list((workdir / 'tensorboard').iterdir())
  # The best checkpoint evaluates to the same numbers (eval_only path).
  again = loop.evaluate(config, str(workdir))
  for k in ('valid/f1/avg', 'test/mosei_wacc/avg', 'test/f1/anger'):
    assert again['metrics'][k] == pytest.approx(metrics[k], abs=1e-6)
