"""The baselines' training recipes (issue 25): config defaults per model and
dataset, flags over them, the grids, gradient clipping, ReduceLROnPlateau
(torch's rules, kept in the optimizer state and the run state) and EmoEmbs'
frozen emotion-word vectors.  No data pipeline, no training run: the real
loop trains every baseline in test_baselines_train.py."""

import dataclasses
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from data_pipelines.tfds import prepare
from experiments import grids
import mesm_jax
from mesm_jax import configs
from mesm_jax import feature_pipeline
from mesm_jax import models
from mesm_jax.train import checkpoint as ckpt_lib
from mesm_jax.train import data as data_lib
from mesm_jax.train import flags
from mesm_jax.train import loop
from mesm_jax.train import optim
from mesm_jax.train import step as step_lib

DIMS = (300, 144, 35)


def feature_batch(b=2, n=3, dims=DIMS, e=6):
  batch = {'labels': np.eye(e, dtype=np.float32)[:b],
           'clip_mask': np.ones(b, bool)}
  rng = np.random.RandomState(0)
  for key, d in zip(('text_feats', 'audio_feats', 'vision_feats'), dims):
    batch[key] = rng.randn(b, n, d).astype(np.float32)
    batch[f'{key}_mask'] = np.ones((b, n), bool)
  return batch


# ------------------------------------------------------------ the recipes


def test_each_baseline_gets_its_recipe_and_mesm_keeps_the_papers():
  want = {
      'lf_lstm': dict(lr=5e-4, epochs=60, batch_size=32, early_stop=8,
                      clip_grad=2.0, plateau_patience=0),
      'lf_trans': dict(lr=5e-4, epochs=60, batch_size=32, early_stop=8,
                       clip_grad=2.0, plateau_patience=0, trans_nlayers=2),
      'emoembs': dict(lr=1e-3, epochs=100, batch_size=64, early_stop=8,
                      clip_grad=1.0, plateau_patience=5, plateau_factor=0.1),
      'mult': dict(lr=1e-3, epochs=40, batch_size=24, early_stop=0,
                   clip_grad=0.8, plateau_patience=20, plateau_factor=0.1),
  }
  for dataset in ('default', 'mosei', 'iemocap'):
    for model, fields in want.items():
      c = mesm_jax.get_config(dataset, model)
      assert {k: c[k] for k in fields} == fields, (dataset, model)
    for model, batch in (('mesm', 2), ('fe2e', 8)):   # the paper's, as before
      c = mesm_jax.get_config(dataset, model)
      assert (c.batch_size, c.lr, c.epochs, c.early_stop, c.clip_grad,
              c.plateau_patience, c.trans_nlayers) == (batch, 5e-5, 40, 6,
                                                       0.0, 0, 4)
  # Per dataset: EmoEmbs' sequence length, MulT's MTER architecture.
  for dataset, length in (('mosei', 20), ('iemocap', 50)):
    c = mesm_jax.get_config(dataset, 'emoembs')
    assert (c.max_text_feats, c.max_audio_feats, c.max_vision_feats) == (
        length,) * 3
  mult = {'iemocap': (10, 4, 0.25, 0.3, False), 'mosei': (8, 4, 0.2, 0.2,
                                                           True)}
  for dataset, (heads, layers, attn, embed, mask) in mult.items():
    c = mesm_jax.get_config(dataset, 'mult')
    assert (c.mult_heads, c.baseline_layers, c.mult_attn_dropout,
            c.mult_embed_dropout, c.mult_attn_mask) == (heads, layers, attn,
                                                        embed, mask)
    assert (c.mult_res_dropout, c.mult_relu_dropout, c.mult_out_dropout,
            c.mult_d_model, tuple(c.mult_conv_kernels)) == (
                0.1, 0.1, 0.1, 40, (3, 5, 3))
  assert configs.PAPER_BATCH_SIZE == {'mesm': 2, 'fe2e': 8, 'lf_lstm': 32,
                                      'lf_trans': 32, 'mult': 24,
                                      'emoembs': 64}


def test_a_given_flag_wins_over_the_recipe_and_the_card_command_is_as_before():
  config, _ = flags.parse(['--dataset', 'iemocap', '--model', 'lf_trans',
                           '--lr', '1e-4', '--trans_nlayers', '3',
                           '--clip_grad', '0'])
  assert (config.lr, config.trans_nlayers, config.clip_grad,
          config.epochs) == (1e-4, 3, 0.0, 60)
  config, _ = flags.parse(['--dataset', 'mosei', '--model', 'mult',
                           '--mult_heads', '5', '--plateau_patience', '0'])
  assert (config.mult_heads, config.plateau_patience,
          config.batch_size) == (5, 0, 24)
  # The model card's MESM command: the paper's values, no clipping, no
  # scheduler, the optimizer state of Adam alone.
  config, _ = flags.parse(['--dataset', 'mosei', '--top_p', '0.5'])
  assert (config.model, config.batch_size, config.lr, config.clip_grad,
          config.plateau_patience, config.epochs, config.early_stop) == (
              'mesm', 2, 5e-5, 0.0, 0, 40, 6)
  state = optim.make_optimizer(config, {'w': jnp.ones(2)}).init(
      {'w': jnp.ones(2)})
  assert optim.lr_scale_of(state) is None
  with pytest.raises(SystemExit):
    flags.parse(['--model', 'mult', '--mult_heads', '7'])   # 30 % 7


def test_the_baseline_grids_run_the_recipes():
  for name, dataset in (('baselines_iemocap', 'iemocap'),
                        ('baselines_mosei', 'mosei')):
    for cell in grids.expand(grids.get_grid(name), seeds=[0]):
      config, _ = flags.parse(grids.to_flags(cell.fields))
      want = mesm_jax.get_config(dataset, config.model)
      for key in ('lr', 'epochs', 'batch_size', 'clip_grad', 'early_stop',
                  'plateau_patience', 'trans_nlayers', 'mult_heads',
                  'max_text_feats', 'baseline_layers'):
        assert config[key] == want[key], (name, cell.name, key)


# ------------------------------------------------------- ReduceLROnPlateau


def test_plateau_follows_torchs_reduce_lr_on_plateau():
  torch = pytest.importorskip('torch')
  losses = [1.0, 0.9, 0.95, 0.9, 0.8999, 0.91, 0.5, 0.5, 0.5, 0.5, 0.49995,
            0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
  for factor, patience, lr in ((0.1, 2, 1e-3), (0.5, 0, 1e-2),
                               (0.1, 1, 1e-6)):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode='min', factor=factor, patience=patience)
    mine = optim.Plateau(factor=factor, patience=patience, lr=lr)
    for loss in losses:
      sched.step(loss)
      mine.step(loss)
      np.testing.assert_allclose(lr * mine.scale, opt.param_groups[0]['lr'],
                                 rtol=1e-9)
      assert mine.bad_epochs == sched.num_bad_epochs
  # By hand: patience 1 -> the 3rd epoch without improvement reduces.
  p = optim.Plateau(factor=0.1, patience=1, lr=1.0)
  assert [p.step(v) for v in (1.0, 1.0, 1.0, 0.5, 0.5, 0.5)] == [
      False, False, True, False, False, True]
  assert p.scale == pytest.approx(0.01)


def test_lr_scale_scales_the_update_and_survives_a_checkpoint(tmp_path):
  config = mesm_jax.get_config('smoke', 'emoembs')        # patience 5, clip 1
  params = {'w': np.arange(4, dtype=np.float32)}
  tx = optim.make_optimizer(config, params)
  opt_state = tx.init(params)
  assert optim.lr_scale_of(opt_state) == 1.0
  grads = {'w': np.array([3.0, -4.0, 0.0, 0.0], np.float32)}   # norm 5
  full, stepped = tx.update(grads, opt_state, params)
  tenth = optim.set_lr_scale(opt_state, 0.1)
  assert optim.lr_scale_of(tenth) == pytest.approx(0.1)
  part, _ = tx.update(grads, tenth, params)
  np.testing.assert_allclose(part['w'], 0.1 * full['w'], rtol=1e-6)
  # Adam's first step is -lr * sign(g) whatever the clipping; the clipped
  # gradient (norm 1.0) is what its first moment holds.
  np.testing.assert_allclose(full['w'], [-1e-3, 1e-3, 0, 0], rtol=1e-4)
  adam = [s for s in jax.tree.leaves(
      stepped, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
          if isinstance(s, optax.ScaleByAdamState)]
  np.testing.assert_allclose(adam[0].mu['w'], 0.1 * np.array(
      [0.6, -0.8, 0, 0]), rtol=1e-5)
  # The scale is part of the checkpointed state: a resumed run has it.
  ckpts = ckpt_lib.Checkpoints(str(tmp_path))
  ckpts.save_latest(3, jax.device_get({'params': params,
                                       'opt_state': tenth}),
                    {'lr_scale': 0.1})
  ckpts.close()
  target = jax.eval_shape(lambda: {'params': params,
                                   'opt_state': tx.init(params)})
  restored, meta = ckpt_lib.Checkpoints(str(tmp_path)).restore_latest(target)
  assert optim.lr_scale_of(restored['opt_state']) == pytest.approx(0.1)
  assert meta == {'lr_scale': 0.1}


def test_plateau_step_writes_the_scale_into_the_state_and_the_run_state():
  config = mesm_jax.get_config('smoke', 'mult')
  config.plateau_patience = 1
  params = {'w': np.ones(3, np.float32)}
  tx = optim.make_optimizer(config, params)
  host = types.SimpleNamespace(opt_state=jax.device_get(tx.init(params)))
  host.replace = lambda **kw: types.SimpleNamespace(**{**vars(host), **kw})
  lines = []
  ctx = types.SimpleNamespace(
      config=config, runner=types.SimpleNamespace(put_state=lambda s: s),
      logger=types.SimpleNamespace(write=lines.append))
  run = loop.RunState(pos_weight=[1.0])
  state = host
  for loss in (1.0, 1.0, 1.0):
    state, host = loop.plateau_step(ctx, state, host, run, loss)
  assert run.lr_scale == pytest.approx(0.1) and run.plateau_bad_epochs == 0
  assert run.plateau_best == 1.0
  assert optim.lr_scale_of(state.opt_state) == pytest.approx(0.1)
  assert len(lines) == 1 and 'ReduceLROnPlateau' in lines[0]
  saved = json.loads(json.dumps(run.to_json()))
  assert loop.RunState.from_json(saved) == run


# ------------------------------------------------ EmoEmbs' emotion vectors


def write_glove(path, words, dim=300):
  rng = np.random.RandomState(0)
  vectors = {}
  with open(path, 'w') as f:
    f.write('the ' + ' '.join(['0.5'] * dim) + '\n')
    for w in words:
      vectors[w] = rng.randn(dim).astype(np.float32).round(4)
      f.write(w + ' ' + ' '.join(f'{x:.4f}' for x in vectors[w]) + '\n')
  return vectors


def fake_data(config, emotions):
  data = object.__new__(data_lib.Data)
  data.config = config
  data.emotions = lambda: tuple(emotions)
  return data


def test_emotion_words_and_vectors_from_glove_or_minilm(tmp_path):
  assert data_lib.emotion_words(
      'iemocap', ('anger', 'excited', 'frustrated', 'happy', 'neutral',
                  'sad')) == ('angry', 'exciting', 'frustrating', 'happy',
                              'neutral', 'sad')
  mosei = ('anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise')
  words = ('anger', 'disgust', 'fear', 'happy', 'sad', 'surprise')
  assert data_lib.emotion_words('mosei', mosei) == words
  assert data_lib.emotion_words('synthetic', mosei) == words
  assert data_lib.emotion_words('manifest', ('calm',)) == ('calm',)
  glove = write_glove(tmp_path / 'glove.txt', words)
  config = mesm_jax.get_config('mosei', 'emoembs')
  config.glove_path = str(tmp_path / 'glove.txt')
  vectors, note = fake_data(config, mosei).emotion_vectors()
  np.testing.assert_allclose(vectors, np.stack([glove[w] for w in words]),
                             rtol=1e-6)
  assert 'GloVe' in note and "'happy'" in note
  config.glove_path = ''
  vectors, note = fake_data(config, mosei).emotion_vectors()
  assert vectors.shape == (6, 384) and 'MiniLM' in note
  assert np.abs(vectors).sum(1).min() > 0            # every word has pieces
  write_glove(tmp_path / 'short.txt', words[:5])
  config.glove_path = str(tmp_path / 'short.txt')
  with pytest.raises(ValueError, match="surprise"):
    fake_data(config, mosei).emotion_vectors()


def test_glove_path_goes_with_a_pickle_source_for_the_emotion_vectors(
    tmp_path):
  """--glove_path with --features_pickle (or the synthetic features): no
  error; the data (its config and name) is that of the source alone, and
  EmoEmbs reads its emotion vectors from the GloVe file."""
  mosei = ('anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise')
  words = data_lib.emotion_words('mosei', mosei)
  glove = write_glove(tmp_path / 'glove.txt', words)
  pickle_file = tmp_path / 'mosei_feats.pkl'
  pickle_file.write_bytes(b'not read here')
  config = mesm_jax.get_config('mosei', 'emoembs')
  config.features_pickle = str(pickle_file)
  config.glove_path = str(tmp_path / 'glove.txt')
  with_glove = prepare.feature_config(feature_pipeline.request(config))
  without = prepare.feature_config(
      prepare.FeatureRequest('mosei', features_pickle=str(pickle_file)))
  # (BuilderConfig compares by identity: compare the fields)
  assert dataclasses.asdict(with_glove) == dataclasses.asdict(without)
  assert with_glove.glove_path == ''
  assert with_glove.name.startswith('pickle-mosei-mosei_feats_')
  vectors, note = fake_data(config, mosei).emotion_vectors()
  np.testing.assert_allclose(vectors, np.stack([glove[w] for w in words]),
                             rtol=1e-6)
  assert 'GloVe' in note
  synthetic = prepare.feature_config(prepare.FeatureRequest(
      'synthetic', glove_path=str(tmp_path / 'glove.txt')))
  assert dataclasses.asdict(synthetic) == dataclasses.asdict(
      prepare.feature_config(prepare.FeatureRequest('synthetic')))


def test_emoembs_vectors_are_frozen_through_a_training_step(fast_compile):
  config = mesm_jax.get_config('smoke', 'emoembs')
  config.baseline_layers = 1
  config.modalities = 't'
  vectors = np.random.RandomState(0).randn(6, 16).astype(np.float32)
  with pytest.raises(ValueError, match='emotion_vectors'):
    models.build_model(config, feature_dims=DIMS)
  model = models.build_model(config, feature_dims=DIMS,
                             emotion_vectors=vectors)
  assert model.hidden_sizes[0] == 16           # the text LSTM: G, as there
  batch = feature_batch(n=2)
  params = model.init(jax.random.key(0), batch)['params']
  assert 'emotion_embeddings' not in params    # a constant, not a parameter
  state = step_lib.create_state(config, model, params, {}, jax.random.key(1))
  leaves = jax.tree.leaves(state.opt_state)
  assert not any(getattr(x, 'shape', None) == vectors.shape for x in leaves)
  step = jax.vmap(step_lib.per_device_train_step, axis_name=step_lib.AXIS,
                  in_axes=(None, 0, None))
  new, metrics = step(state, jax.tree.map(lambda x: x[None], batch),
                      jnp.ones(6))
  new, metrics = jax.tree.map(lambda x: x[0], (new, metrics))
  assert np.isfinite(metrics['loss'])
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), state.params,
                         new.params)
  assert changed['text_lstm0']['forward']['ii']['kernel']   # it trained
  # The vectors: unchanged, and what the text scores are computed with.
  np.testing.assert_array_equal(np.asarray(new.apply_fn.__self__
                                           .emotion_embeddings), vectors)
  out = model.apply({'params': new.params}, batch)
  bound = model.bind({'params': new.params})
  np.testing.assert_allclose(np.asarray(bound._embeddings()), vectors)
  assert out['modality_logits']['t'].shape == (2, 6)
