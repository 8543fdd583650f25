"""FE2E and MESM: shapes, equivalences, padding invariance, gradient modes.

Whole-model tests use the smoke widths (``get_config('smoke')``) and small
batches; shape-only tests use ``jax.eval_shape`` (tracing, no compile).
"""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mesm_jax
from mesm_jax.models import attention, cnn, param_labels, text, transformer
from mesm_jax.models.fusion import LateFusion
from mesm_jax.nucleus import nucleus_capacity, nucleus_mask

pytestmark = pytest.mark.usefixtures('fast_compile')
E = 6


def smoke(**overrides):
  c = mesm_jax.get_config('smoke')
  c.update(overrides)
  return c


def make_batch(seed, b=2, f=2, c=2, length=12, face_mask=None, spec_mask=None):
  rng = np.random.RandomState(seed)
  face_mask = np.ones((b, f), bool) if face_mask is None else face_mask
  spec_mask = np.ones((b, c), bool) if spec_mask is None else spec_mask
  text_mask = np.ones((b, length), np.int32)
  text_mask[:, length - 3:] = 0
  return dict(
      text_ids=rng.randint(0, 64, (b, length)).astype(np.int32),
      text_mask=text_mask,
      faces=rng.randn(b, f, 48, 48, 3).astype(np.float32),
      face_mask=face_mask,
      spec=rng.rand(b, c, 128, 32).astype(np.float32),
      spec_mask=spec_mask,
      labels=np.zeros((b, E), np.float32),
      clip_mask=np.ones((b,), bool))


def init(model, batch, seed=0):
  return jax.jit(lambda: model.init(jax.random.key(seed), batch))()




def run_both_modes(model, variables, batch):
  """(train outputs, updated batch_stats, eval outputs), one compile."""
  @jax.jit
  def f(variables, batch):
    out, upd = model.apply(variables, batch, train=True,
                           rngs={'dropout': jax.random.key(7)},
                           mutable=['batch_stats'])
    return out, upd['batch_stats'], model.apply(variables, batch, train=False)
  return f(variables, batch)


# --- shapes -----------------------------------------------------------------

@pytest.mark.parametrize('model_name, impl, modalities', [
    ('fe2e', 'masked', 'tav'), ('mesm', 'masked', 'tav'),
    ('mesm', 'gathered', 'tav'), ('fe2e', 'gathered', 'v'),
    ('fe2e', 'gathered', 'a'), ('mesm', 'gathered', 'ta'),
])
def test_output_shapes(model_name, impl, modalities):
  model = mesm_jax.build_model(
      smoke(model=model_name, sparse_impl=impl, modalities=modalities))
  batch = make_batch(0, b=3, f=4, c=2)
  for m, keys in (('t', ('text_ids', 'text_mask')), ('v', ('faces',)),
                  ('a', ('spec',))):
    if m not in modalities:      # missing modalities' keys may be absent
      for k in keys:
        batch.pop(k)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), batch))
  assert set(variables) == {'params', 'batch_stats'}
  out, upd = jax.eval_shape(
      lambda v: model.apply(v, batch, train=True, mutable=['batch_stats'],
                            rngs={'dropout': jax.random.key(1)}), variables)
  chex.assert_shape(out['logits'], (3, E))
  assert set(out['modality_logits']) == set(modalities)
  chex.assert_shape(list(out['modality_logits'].values()), (3, E))
  want_stats = {f'kept_{m}_stage{s}' for m in 'av' if m in modalities
                for s in (3, 4, 5)} if model_name == 'mesm' else set()
  assert set(out['stats']) == want_stats
  chex.assert_shape(list(out['stats'].values()), ())
  chex.assert_trees_all_equal_shapes(upd['batch_stats'],
                                     variables['batch_stats'])


@pytest.mark.parametrize('sparse_model', [False, True])
@pytest.mark.parametrize('size, channels, final', [
    ((48, 48), 3, (3, 3)), ((128, 32), 1, (8, 2))])
def test_frame_cnn_shapes(sparse_model, size, channels, final):
  features = (4, 8, 8, 16)
  net = cnn.FrameCNN(features, 16, 8, sparse=sparse_model, top_p=0.5)
  x = jnp.zeros((5,) + size + (channels,))
  q = jnp.zeros((5, 16))
  variables = jax.eval_shape(lambda: net.init(jax.random.key(0), x,
                                              jnp.ones(5), q))
  (feats, stats) = jax.eval_shape(
      lambda v: net.apply(v, x, jnp.ones(5), q), variables)
  chex.assert_shape(feats, (5, 8))
  fc1 = variables['params']['fc1']['kernel']
  chex.assert_shape(fc1, (final[0] * final[1] * 16, 16))  # NHWC flatten
  assert set(stats) == ({'stage3', 'stage4', 'stage5'} if sparse_model
                        else set())
  if sparse_model:  # sparse convs have no bias, attention width = C_in
    assert set(variables['params']['stage3']['conv1']) == {'kernel'}
    chex.assert_shape(variables['params']['attn3']['w_q']['kernel'], (16, 4))
    chex.assert_shape(variables['params']['attn5']['w_m']['kernel'], (8, 8))


def test_module_output_shapes():
  x = jnp.zeros((2, 5, 8))
  mask = jnp.ones((2, 5), bool)
  seq = transformer.SequenceTransformer(1, 2, 16)
  v = jax.eval_shape(lambda: seq.init(jax.random.key(0), x, mask, False))
  chex.assert_shape(jax.eval_shape(lambda v: seq.apply(v, x, mask, False), v),
                    (2, 8))
  enc = text.build_text_encoder(smoke())
  ids = jnp.zeros((2, 12), jnp.int32)
  v = jax.eval_shape(lambda: enc.init(jax.random.key(0), ids, ids, False))
  hidden, cls = jax.eval_shape(lambda v: enc.apply(v, ids, ids, False), v)
  chex.assert_shape(hidden, (2, 12, 16))
  chex.assert_shape(cls, (2, 16))
  assert enc.hidden_size == 16  # D, the name every text encoder exposes
  att = attention.CrossModalAttention(0.5)
  m, q, valid = jnp.zeros((3, 6, 6, 4)), jnp.zeros((3, 16)), jnp.ones(
      (3, 6, 6), bool)
  v = jax.eval_shape(lambda: att.init(jax.random.key(0), m, q, valid))
  out, keep, probs = jax.eval_shape(lambda v: att.apply(v, m, q, valid), v)
  chex.assert_shape([out], (3, 6, 6, 4))
  chex.assert_shape([keep, probs], (3, 6, 6))


def test_full_paper_widths_shapes():
  """Paper widths (64/128/256/512, fc 1024, 768-wide text): shapes only."""
  config = mesm_jax.get_config('default')
  config.text_model = 'scratch'      # 768 wide, like ALBERT's CLS
  config.scratch_text_layers = 1
  model = mesm_jax.build_model(config)
  batch = make_batch(0, b=2, f=3, c=2, length=100)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), batch))
  p = variables['params']
  chex.assert_shape(p['visual_cnn']['fc1']['kernel'], (512 * 3 * 3, 1024))
  chex.assert_shape(p['audio_cnn']['fc1']['kernel'], (512 * 8 * 2, 1024))
  chex.assert_shape(p['visual_cnn']['stem']['layer']['conv']['kernel'],
                    (5, 5, 3, 64))
  chex.assert_shape(p['audio_cnn']['stem']['layer']['conv']['kernel'],
                    (5, 5, 1, 64))
  for s, k in ((3, 64), (4, 128), (5, 256)):
    chex.assert_shape(p['visual_cnn'][f'attn{s}']['w_q']['kernel'], (768, k))
  chex.assert_shape(p['visual_cnn']['stage5']['conv2']['kernel'],
                    (3, 3, 512, 512))
  chex.assert_shape(p['text_head']['kernel'], (768, E))
  chex.assert_shape(p['fusion']['mix']['kernel'], (3, 1))
  out = jax.eval_shape(lambda v: model.apply(v, batch, train=False), variables)
  chex.assert_shape(out['logits'], (2, E))


def test_config_errors():
  with pytest.raises(ValueError, match='MESM needs the text'):
    mesm_jax.build_model(smoke(model='mesm', modalities='av'))
  with pytest.raises(ValueError, match='modalities'):
    mesm_jax.build_model(smoke(model='fe2e', modalities='tx'))
  with pytest.raises(ValueError, match='sparse_impl'):
    mesm_jax.build_model(smoke(sparse_impl='dense'))
  batch = make_batch(0)
  del batch['face_mask']
  with pytest.raises(KeyError, match="'v' needs batch keys \\['face_mask'\\]"):
    mesm_jax.build_model(smoke(model='fe2e')).init(jax.random.key(0), batch)


def test_text_encoder_subtree_and_labels():
  enc = text.ScratchTextEncoder(64, 16, 1, 2, 32, max_len=12)
  model = mesm_jax.build_model(smoke(model='fe2e', modalities='tv'),
                               text_encoder=enc)
  batch = make_batch(0)
  params = jax.eval_shape(
      lambda: model.init(jax.random.key(0), batch))['params']
  assert 'token_embed' in params['text_encoder']
  labels = flax.traverse_util.flatten_dict(param_labels(params))
  for path, label in labels.items():
    assert label == ('text' if path[0] in ('text_encoder', 'text_head')
                     else 'default'), path
  assert 'text' in labels.values() and 'default' in labels.values()


# --- components against references ------------------------------------------

def test_cross_modal_attention_matches_equations():
  rng = np.random.RandomState(0)
  m = rng.randn(4, 6, 6, 5).astype(np.float32)
  q = rng.randn(4, 7).astype(np.float32)
  valid = rng.rand(4, 6, 6) < 0.6
  valid[:, 0, 0] = True
  att = attention.CrossModalAttention(0.5, 'scaled')
  v = att.init(jax.random.key(0), m, q, valid)
  out, keep, probs = map(np.asarray, att.apply(v, m, q, valid))
  p = jax.tree.map(np.asarray, v['params'])
  m_q = np.tanh(m @ p['w_m']['kernel'] + p['w_m']['bias']
                + (q @ p['w_q']['kernel'])[:, None, None])          # Eq. 1
  s = (m_q @ p['w_i']['kernel'])[..., 0] + p['w_i']['bias'][0]
  s = np.where(valid, s, -np.inf).reshape(4, 36)
  want = np.exp(s - s.max(-1, keepdims=True))
  want = (want / want.sum(-1, keepdims=True)).reshape(4, 6, 6)       # Eq. 2
  np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-7)
  want_keep = np.asarray(nucleus_mask(probs.reshape(4, 36), 0.5,
                                      valid.reshape(4, 36))).reshape(4, 6, 6)
  np.testing.assert_array_equal(keep, want_keep)
  assert np.all(keep.reshape(4, -1).sum(-1) <= nucleus_capacity(36, 0.5))
  scale = probs * keep / (probs * keep).sum((1, 2), keepdims=True) \
      * keep.sum((1, 2), keepdims=True)
  np.testing.assert_allclose(out, m * scale[..., None], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scale.sum((1, 2)) / keep.sum((1, 2)), 1, rtol=1e-5)
  out_none = np.asarray(attention.CrossModalAttention(0.5, 'none').apply(
      v, m, q, valid)[0])
  np.testing.assert_array_equal(out_none, m * keep[..., None])


def _layer_norm(x, p):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + 1e-5) * p['scale'] + p['bias']


def test_post_norm_layer_matches_numpy():
  """PyTorch TransformerEncoderLayer rule, eval mode, key padding mask."""
  rng = np.random.RandomState(1)
  x = rng.randn(2, 5, 8).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  layer = transformer.PostNormEncoderLayer(num_heads=2, ff_dim=16)
  v = layer.init(jax.random.key(0), x, mask, False)
  got = np.asarray(layer.apply(v, x, mask, False))
  p = jax.tree.map(np.asarray, v['params'])
  a = p['attention']
  proj = lambda n: np.einsum('bld,dhk->blhk', x, a[n]['kernel']) + a[n]['bias']
  logits = np.einsum('bqhk,bshk->bhqs', proj('query'), proj('key')) / 2.0
  logits = np.where(mask[:, None, None, :], logits, -np.inf)   # Dh = 4
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  att = np.einsum('bhqs,bshk->bqhk', w, proj('value'))
  att = np.einsum('bqhk,hkd->bqd', att, a['out']['kernel']) + a['out']['bias']
  h = _layer_norm(x + att, p['norm1'])
  ff = np.maximum(h @ p['ff1']['kernel'] + p['ff1']['bias'], 0)
  ff = ff @ p['ff2']['kernel'] + p['ff2']['bias']
  np.testing.assert_allclose(got, _layer_norm(h + ff, p['norm2']),
                             rtol=1e-4, atol=1e-5)


def test_fusion_is_linear_without_bias():
  rng = np.random.RandomState(2)
  logits = [rng.randn(3, E).astype(np.float32) for _ in range(3)]
  fusion = LateFusion()
  v = fusion.init(jax.random.key(0), logits)
  w = np.asarray(v['params']['mix']['kernel'])[:, 0]
  want = sum(w[i] * logits[i] for i in range(3))
  np.testing.assert_allclose(fusion.apply(v, logits), want, rtol=1e-5)
  v1 = fusion.init(jax.random.key(0), logits[:1])
  assert not v1 and np.all(fusion.apply(v1, logits[:1]) == logits[0])


# --- whole-model behaviour ---------------------------------------------------

def _fe2e_params_from_mesm(mesm_params, fe2e_shapes):
  """FE2E params = MESM's where names match; sparse stages' conv biases 0.

  MESM's sparse convs have no bias while FE2E's dense ones do; with zero
  biases both compute the same function when every position is kept.
  """
  src = flax.traverse_util.flatten_dict(mesm_params)
  out = {}
  for path, leaf in flax.traverse_util.flatten_dict(fe2e_shapes).items():
    if path in src:
      out[path] = src[path]
    else:
      assert path[-1] == 'bias' and path[1] in ('stage3', 'stage4', 'stage5')
      out[path] = jnp.zeros(leaf.shape, leaf.dtype)
  return flax.traverse_util.unflatten_dict(out)


@pytest.mark.slow  # compiles whole models: not in the quick subset
def test_mesm_at_p1_equals_fe2e():
  batch = make_batch(3, b=2, f=2, c=2,
                     face_mask=np.array([[1, 1], [1, 0]], bool))
  cfg = dict(top_p=1.0, dropout=0.0, sparse_impl='gathered')
  mesm = mesm_jax.build_model(smoke(model='mesm', **cfg))
  fe2e = mesm_jax.build_model(smoke(model='fe2e', **cfg))
  v_mesm = init(mesm, batch)
  shapes = jax.eval_shape(lambda: fe2e.init(jax.random.key(0), batch))
  v_fe2e = {'params': _fe2e_params_from_mesm(v_mesm['params'],
                                             shapes['params']),
            'batch_stats': v_mesm['batch_stats']}
  train_m, stats_m, eval_m = run_both_modes(mesm, v_mesm, batch)
  train_f, stats_f, eval_f = run_both_modes(fe2e, v_fe2e, batch)
  chex.assert_trees_all_close(train_m['logits'], train_f['logits'], atol=1e-4)
  chex.assert_trees_all_close(eval_m['modality_logits'],
                              eval_f['modality_logits'], atol=1e-4)
  chex.assert_trees_all_close(stats_m, stats_f, atol=1e-5, rtol=1e-4)
  assert all(np.isclose(v, 1.0) for v in train_m['stats'].values())


def _pad_batch(batch, seed, b=3, f=3, c=3):
  """Same real clips, plus padded frames, chunks and a padded clip (noise)."""
  rng = np.random.RandomState(seed)
  big = make_batch(seed + 100, b=b, f=f, c=c)
  big = {k: v * 10 if v.dtype == np.float32 else v for k, v in big.items()}
  b0, f0 = batch['face_mask'].shape
  c0 = batch['spec_mask'].shape[1]
  big['text_ids'][:b0], big['text_mask'][:b0] = batch['text_ids'], batch[
      'text_mask']
  big['faces'][:b0, :f0] = np.where(batch['face_mask'][..., None, None, None],
                                    batch['faces'], rng.randn(1))
  big['faces'][:, -1, 0, 0, 0] = np.nan     # a padded frame may hold NaN
  big['spec'][:b0, :c0] = np.where(batch['spec_mask'][..., None, None],
                                   batch['spec'], 5.0)
  for key, n0 in (('face_mask', f0), ('spec_mask', c0)):
    big[key][:] = False
    big[key][:b0, :n0] = batch[key]
  big['face_mask'][b0:] = True          # the padded clip has "real" frames
  big['clip_mask'][:] = False
  big['clip_mask'][:b0] = True
  return big


@pytest.mark.slow  # compiles whole models: not in the quick subset
@pytest.mark.parametrize('model_name', ['fe2e', 'mesm'])
def test_padding_changes_no_real_clip(model_name):
  """Padded frames, chunks and clips: same logits (train BN and eval)."""
  batch = make_batch(4, b=2, f=2, c=2,
                     face_mask=np.array([[1, 1], [1, 0]], bool),
                     spec_mask=np.array([[1, 0], [1, 1]], bool))
  padded = _pad_batch(batch, 5)
  # dropout 0: dropout masks depend on array shapes, BatchNorm must not
  model = mesm_jax.build_model(smoke(model=model_name, dropout=0.0, top_p=0.5))
  variables = init(model, batch)
  rng = np.random.RandomState(6)
  variables['batch_stats'] = jax.tree.map(   # non-trivial running statistics
      lambda v: v + np.abs(rng.randn(*v.shape)).astype(np.float32),
      variables['batch_stats'])
  train_a, stats_a, eval_a = run_both_modes(model, variables, batch)
  train_b, stats_b, eval_b = run_both_modes(model, variables, padded)
  cut = lambda out: jax.tree.map(lambda x: x[:2], {
      'logits': out['logits'], 'm': out['modality_logits']})
  chex.assert_trees_all_close(cut(train_a), cut(train_b), atol=2e-5, rtol=1e-4)
  chex.assert_trees_all_close(cut(eval_a), cut(eval_b), atol=2e-5, rtol=1e-4)
  chex.assert_trees_all_close(stats_a, stats_b, atol=1e-6, rtol=1e-4)
  chex.assert_trees_all_close(train_a['stats'], train_b['stats'], rtol=1e-6)


def _grads(model, variables, batch):
  def loss(params):
    out, _ = model.apply({**variables, 'params': params}, batch, train=True,
                         rngs={'dropout': jax.random.key(3)},
                         mutable=['batch_stats'])
    return jnp.sum(out['logits'] ** 2), out['logits']
  return jax.jit(jax.grad(loss, has_aux=True))(variables['params'])


def _attention_grads(grads):
  flat = flax.traverse_util.flatten_dict(grads)
  return {k: v for k, v in flat.items() if k[1].startswith('attn')}


@pytest.mark.slow  # compiles whole models: not in the quick subset
def test_attention_gradient_modes_and_impls():
  """'none': exactly zero attention grads; 'scaled': non-zero, and the
  gathered implementation gives the masked one's logits and gradients."""
  batch = make_batch(7, b=2, f=2, c=2)
  results = {}
  for mode, impl in (('none', 'gathered'), ('scaled', 'gathered'),
                     ('scaled', 'masked')):
    model = mesm_jax.build_model(smoke(
        model='mesm', modalities='tv', top_p=0.5, attention_grad=mode,
        sparse_impl=impl))
    results[mode, impl] = _grads(model, init(model, batch), batch)
  none = _attention_grads(results['none', 'gathered'][0])
  assert len(none) == 3 * 5    # 3 stages x (w_m kernel+bias, w_q, w_i k+b)
  assert all(np.all(np.asarray(g) == 0) for g in none.values())
  scaled = _attention_grads(results['scaled', 'gathered'][0])
  for path, g in scaled.items():
    if path[-1] == 'kernel':
      assert np.abs(np.asarray(g)).max() > 0, path
  (g_gat, l_gat), (g_mask, l_mask) = (results['scaled', 'gathered'],
                                      results['scaled', 'masked'])
  chex.assert_trees_all_close(l_gat, l_mask, atol=1e-5)
  chex.assert_trees_all_close(g_gat, g_mask, atol=1e-4, rtol=1e-3)


def test_bfloat16_and_remat_options():
  """bf16 compute stays close to float32; remat changes no gradient."""
  batch = make_batch(8, b=2, f=2, c=1)
  base = dict(model='fe2e', modalities='v', dropout=0.0)
  model32 = mesm_jax.build_model(smoke(**base))
  variables = init(model32, batch)
  model16 = mesm_jax.build_model(smoke(dtype='bfloat16', **base))
  assert jax.tree.leaves(init(model16, batch))[0].dtype == jnp.float32
  ev = lambda m: jax.jit(lambda v: m.apply(v, batch, train=False))(variables)
  out32, out16 = ev(model32), ev(model16)
  assert out16['logits'].dtype == jnp.float32
  np.testing.assert_allclose(out16['logits'], out32['logits'], atol=0.1)
  remat = mesm_jax.build_model(smoke(remat=True, **base))
  chex.assert_trees_all_close(_grads(remat, variables, batch),
                              _grads(model32, variables, batch), rtol=1e-4,
                              atol=1e-4)


def test_batchnorm_statistics_shared_over_named_axis():
  """build_model(axis_name=...): two shards of one clip each under a named
  axis (as under pmap) give the logits and statistics of the 2-clip batch."""
  batch = make_batch(9, b=2, f=2, c=1,
                     face_mask=np.array([[1, 1], [1, 0]], bool))
  base = smoke(model='fe2e', modalities='v', dropout=0.0)
  variables = init(mesm_jax.build_model(base), batch)
  shared = mesm_jax.build_model(base, axis_name='batch')
  train = lambda m, v, b: m.apply(v, b, train=True, mutable=['batch_stats'])
  shards = jax.tree.map(lambda x: x.reshape((2, 1) + x.shape[1:]), batch)
  out_s, upd_s = jax.jit(jax.vmap(lambda b: train(shared, variables, b),
                                  axis_name='batch'))(shards)
  out_all, upd_all = jax.jit(lambda b: train(mesm_jax.build_model(base),
                                             variables, b))(batch)
  chex.assert_trees_all_close(out_s['logits'].reshape(2, E), out_all['logits'],
                              atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[1], upd_s), upd_all,
                              atol=1e-6, rtol=1e-4)
