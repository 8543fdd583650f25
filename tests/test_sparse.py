"""Sparse stages (masked and gathered), sparse max-pool and masked BatchNorm.

References are plain numpy: the submanifold stage is computed with loops
over the active positions only, so nothing dense can leak into it.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesm_jax.models import sparse
from mesm_jax.models.batchnorm import MaskedBatchNorm, normalize_train
from mesm_jax.models.cnn import SparseVGGStage
from mesm_jax.nucleus import nucleus_capacity, nucleus_mask

EPS = 1e-5
SHAPES = [(6, 6), (8, 4)]   # a face-like and a spectrogram-like (tall) map


def nucleus_active(rng, n_frames, h, w, p):
  """Active masks as MESM makes them: a nucleus of random probabilities."""
  logits = jnp.asarray(rng.randn(n_frames, h * w) * 2, jnp.float32)
  return np.asarray(nucleus_mask(jax.nn.softmax(logits), p)).reshape(
      n_frames, h, w)


def make_inputs(seed, h, w, p=0.5, c=3):
  rng = np.random.RandomState(seed)
  x = rng.randn(3, h, w, c).astype(np.float32)
  active = nucleus_active(rng, 3, h, w, p)
  frame_weight = np.array([1.0, 1.0, 0.0], np.float32)   # frame 2 is padding
  return rng, x, active, frame_weight


def ref_stage(x, active, frame_weight, kernels):
  """numpy submanifold stage: loops over active positions (module doc)."""
  n, h, w, _ = x.shape
  feats = x * active[..., None]
  real = active & (frame_weight[:, None, None] > 0)
  for k in kernels:
    out = np.zeros((n, h, w, k.shape[-1]))
    for f, y, xx in zip(*np.nonzero(active)):
      for dy in range(3):
        for dx in range(3):
          yy, xn = y + dy - 1, xx + dx - 1
          if 0 <= yy < h and 0 <= xn < w and active[f, yy, xn]:
            out[f, y, xx] += feats[f, yy, xn] @ k[dy, dx]
    mean, var = out[real].mean(0), out[real].var(0)
    feats = np.maximum((out - mean) / np.sqrt(var + EPS), 0) * active[..., None]
  return ref_pool(feats, active)


def ref_pool(x, active):
  n, h, w, c = x.shape
  y = np.zeros((n, h // 2, w // 2, c))
  a = np.zeros((n, h // 2, w // 2), bool)
  for f in range(n):
    for i in range(h // 2):
      for j in range(w // 2):
        win = active[f, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        if win.any():
          vals = x[f, 2 * i:2 * i + 2, 2 * j:2 * j + 2][win]
          y[f, i, j], a[f, i, j] = vals.max(0), True
  return y, a


def plain_norm(i, h, w):
  """BatchNorm (scale 1, bias 0) over entries with weight > 0, then ReLU."""
  del i
  wt = jnp.broadcast_to(w, h.shape[:-1])[..., None]
  axes = tuple(range(h.ndim - 1))
  mean = jnp.sum(wt * h, axes) / jnp.sum(wt)
  var = jnp.sum(wt * (h - mean) ** 2, axes) / jnp.sum(wt)
  return jax.nn.relu((h - mean) / jnp.sqrt(var + EPS))


@pytest.mark.parametrize('impl', ['masked', 'gathered'])
@pytest.mark.parametrize('hw', SHAPES)
def test_stage_matches_numpy_loops(impl, hw):
  h, w = hw
  rng, x, active, fw = make_inputs(0, h, w)
  kernels = [rng.randn(3, 3, 3, 4).astype(np.float32) * 0.5,
             rng.randn(3, 3, 4, 4).astype(np.float32) * 0.5]
  cap = nucleus_capacity(h * w, 0.5)
  y, a = sparse.get_stage(impl)(jnp.asarray(x), jnp.asarray(active),
                                jnp.asarray(fw), kernels, plain_norm, cap)
  want_y, want_a = ref_stage(x, active, fw, kernels)
  chex.assert_shape(y, (3, h // 2, w // 2, 4))
  np.testing.assert_array_equal(np.asarray(a), want_a)
  np.testing.assert_allclose(np.asarray(y), want_y, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize('impl', ['masked', 'gathered'])
def test_stage_edge_patterns(impl):
  """All active, one corner, a checkerboard (no active neighbour at all)."""
  rng = np.random.RandomState(6)
  x = rng.randn(3, 4, 6, 2).astype(np.float32)
  active = np.zeros((3, 4, 6), bool)
  active[0] = True
  active[1, 3, 5] = True
  active[2] = (np.add.outer(np.arange(4), np.arange(6)) % 2) == 0
  fw = np.ones(3, np.float32)
  kernels = [rng.randn(3, 3, 2, 3).astype(np.float32)]
  y, a = sparse.get_stage(impl)(jnp.asarray(x), jnp.asarray(active),
                                jnp.asarray(fw), kernels, plain_norm, 24)
  want_y, want_a = ref_stage(x, active, fw, kernels)
  np.testing.assert_array_equal(np.asarray(a), want_a)
  np.testing.assert_allclose(np.asarray(y), want_y, atol=2e-5, rtol=1e-4)


def test_max_pool_over_active_inputs_only():
  rng = np.random.RandomState(1)
  x = -np.abs(rng.randn(2, 6, 4, 3)).astype(np.float32)  # all negative
  active = rng.rand(2, 6, 4) < 0.4
  y, a = sparse.masked_max_pool(jnp.asarray(x), jnp.asarray(active))
  want_y, want_a = ref_pool(x, active)
  np.testing.assert_array_equal(np.asarray(a), want_a)
  np.testing.assert_allclose(np.asarray(y), want_y, rtol=1e-6)


def test_compact_layout_neighbours():
  """Each slot's 3x3 neighbours are the active positions around it."""
  active = np.zeros((1, 3, 3), bool)
  active[0, [0, 1, 2], [0, 1, 1]] = True          # flat positions 0, 4, 7
  lay = sparse.compact_layout(jnp.asarray(active), capacity=5)
  np.testing.assert_array_equal(np.asarray(lay.index)[0, :3], [0, 4, 7])
  np.testing.assert_array_equal(np.asarray(lay.valid)[0],
                                [True, True, True, False, False])
  # neighbours in (dy, dx) row-major order; 5 (= capacity) means none
  np.testing.assert_array_equal(np.asarray(lay.neighbours)[0, 1],
                                [0, 5, 5, 5, 1, 5, 5, 2, 5])
  np.testing.assert_array_equal(np.asarray(lay.neighbours)[0, 2],
                                [5, 1, 5, 5, 2, 5, 5, 5, 5])


def _stage_fn(impl, cap, train=True):
  stage = SparseVGGStage(4, cap, impl, train=train)

  def apply(variables, x, active, fw):
    return stage.apply(variables, x, active, fw, mutable=['batch_stats'])
  return stage, apply


@pytest.mark.parametrize('hw', SHAPES)
def test_gathered_equals_masked_forward_and_gradients(hw):
  h, w = hw
  rng, x, active, fw = make_inputs(2, h, w, p=0.4)
  cap = nucleus_capacity(h * w, 0.4)
  stage, _ = _stage_fn('masked', cap)
  variables = stage.init(jax.random.key(0), x, active, fw)
  params = jax.tree.map(lambda v: v + 0.1 * rng.randn(*v.shape),
                        variables['params'])   # non-trivial BN scale/bias
  cot = rng.randn(3, h // 2, w // 2, 4)
  results = {}
  for impl in ('masked', 'gathered'):
    _, apply = _stage_fn(impl, cap)

    def loss(p, xx):
      stats = variables['batch_stats']
      (y, a), upd = apply({'params': p, 'batch_stats': stats}, xx, active, fw)
      return jnp.sum(y * cot), (y, a, upd)
    results[impl] = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        params, jnp.asarray(x))
  (lm, (ym, am, um)), gm = results['masked']
  (lg, (yg, ag, ug)), gg = results['gathered']
  np.testing.assert_array_equal(np.asarray(am), np.asarray(ag))
  chex.assert_trees_all_close(ym, yg, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(um, ug, atol=1e-6, rtol=1e-5)
  chex.assert_trees_all_close(gm, gg, atol=1e-5, rtol=1e-4)
  # no gradient reaches inactive positions; real active ones get some
  assert np.all(np.asarray(gg[1])[~active] == 0)
  assert np.abs(np.asarray(gg[1])[active & (fw[:, None, None] > 0)]).sum() > 0


def test_gathered_equals_masked_in_eval_mode():
  rng, x, active, fw = make_inputs(3, 6, 6, p=0.7)
  cap = nucleus_capacity(36, 0.7)
  stage = SparseVGGStage(4, cap, 'masked', train=False)
  variables = stage.init(jax.random.key(1), x, active, fw)
  variables = jax.tree.map(lambda v: v + 0.2 * np.abs(rng.randn(*v.shape)),
                           variables)   # non-trivial running statistics
  outs = [SparseVGGStage(4, cap, impl, train=False).apply(
      variables, x, active, fw) for impl in ('masked', 'gathered')]
  chex.assert_trees_all_close(outs[0], outs[1], atol=1e-5)


def _stage_flops(impl, p, h=24, w=24, c=16):
  cap = nucleus_capacity(h * w, p)
  kernels = [jnp.zeros((3, 3, c, c))] * 2
  fn = lambda x, a: sparse.get_stage(impl)(x, a, jnp.ones(4), kernels,
                                           plain_norm, cap)
  lowered = jax.jit(fn).lower(jnp.zeros((4, h, w, c)),
                              jnp.zeros((4, h, w), bool))
  cost = lowered.compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return cost['flops']


def test_gathered_work_shrinks_with_p():
  """XLA's flop count of the gathered stage follows the capacity."""
  full, half, quarter = (_stage_flops('gathered', p) for p in (1.0, 0.5, 0.25))
  assert quarter < 0.6 * half < 0.6 * full
  masked_q = _stage_flops('masked', 0.25)
  assert quarter < 0.5 * masked_q


# --- masked BatchNorm -------------------------------------------------------

def ref_bn_train(x, weights, momentum=0.1):
  """numpy: statistics over entries with weight 1; PyTorch running update."""
  sel = x[weights > 0]
  mean, var = sel.mean(0), sel.var(0)
  n = len(sel)
  y = (x - mean) / np.sqrt(var + EPS)
  new_mean = (1 - momentum) * 0.0 + momentum * mean
  new_var = (1 - momentum) * 1.0 + momentum * var * n / (n - 1)
  return y, new_mean, new_var


def test_masked_batchnorm_train_and_eval():
  rng = np.random.RandomState(4)
  x = rng.randn(5, 3, 2, 4).astype(np.float32) * 3 + 1
  weights = rng.rand(5, 3, 2) < 0.5
  x[~weights] = 1e4                       # padding must not matter
  bn = MaskedBatchNorm()
  variables = bn.init(jax.random.key(0), x, weights, train=False)
  y, upd = bn.apply(variables, x, weights, train=True, mutable=['batch_stats'])
  want_y, want_mean, want_var = ref_bn_train(x.astype(np.float64), weights)
  np.testing.assert_allclose(np.asarray(y)[weights], want_y[weights],
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(upd['batch_stats']['mean'], want_mean, rtol=1e-5)
  np.testing.assert_allclose(upd['batch_stats']['var'], want_var, rtol=1e-5)
  # eval mode normalises with the running statistics
  y_eval = bn.apply({**variables, **upd}, x, weights, train=False)
  want_eval = (x - want_mean) / np.sqrt(want_var + EPS)
  np.testing.assert_allclose(y_eval, want_eval, rtol=1e-4, atol=1e-4)


def test_masked_batchnorm_psum_over_named_axis():
  """Two shards under a named axis give the statistics of the whole batch."""
  rng = np.random.RandomState(5)
  x = rng.randn(2, 6, 3).astype(np.float32)
  weights = rng.rand(2, 6) < 0.7
  weights[:, 0] = True
  bn_shared = MaskedBatchNorm(axis_name='batch')
  variables = bn_shared.init(jax.random.key(0), x[0], weights[0], train=False)
  run = lambda xx, ww: bn_shared.apply(variables, xx, ww, train=True,
                                       mutable=['batch_stats'])
  y_shards, upd_shards = jax.vmap(run, axis_name='batch')(x, weights)
  y_all, upd_all = MaskedBatchNorm().apply(
      variables, x.reshape(12, 3), weights.reshape(12), train=True,
      mutable=['batch_stats'])
  chex.assert_trees_all_close(y_shards.reshape(12, 3), y_all, atol=1e-5)
  for shard in range(2):
    chex.assert_trees_all_close(
        jax.tree.map(lambda v: v[shard], upd_shards), upd_all, atol=1e-6)


def _autodiff_bn(x, w, scale, bias, relu):
  """BatchNorm (+ ReLU) over weighted entries, written out for autodiff."""
  wf = jnp.broadcast_to(w, x.shape[:-1]).astype(jnp.float32)[..., None]
  axes = tuple(range(x.ndim - 1))
  total = jnp.sum(wf)
  mean = jnp.sum(jnp.where(wf > 0, wf * x, 0.0), axes) / total
  var = jnp.sum(jnp.where(wf > 0, wf * (x - mean) ** 2, 0.0), axes) / total
  y = (x - mean) / jnp.sqrt(var + EPS) * scale + bias
  return jnp.maximum(y, 0.0) if relu else y


@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize('weights_kind', ['mask', 'fractional'])
def test_normalize_train_gradient_matches_autodiff(relu, weights_kind):
  """The hand-written gradient against autodiff of the plain formula."""
  rng = np.random.RandomState(6)
  x = rng.randn(4, 5, 3, 6).astype(np.float32) * 2 + 0.5
  mask = rng.rand(4, 5, 3) < 0.6
  x[~mask] = 30.0                                  # padding: ignored by stats
  w = mask if weights_kind == 'mask' else mask * rng.uniform(0.2, 1.0, mask.shape)
  scale = rng.uniform(0.5, 1.5, 6).astype(np.float32)
  bias = rng.randn(6).astype(np.float32) * 0.3
  cot = rng.randn(*x.shape).astype(np.float32)

  def fused(x, scale, bias):
    return normalize_train(x, w, scale, bias, EPS, relu, None)[0]

  def plain(x, scale, bias):
    return _autodiff_bn(x, w, scale, bias, relu)

  y, vjp = jax.vjp(fused, x, scale, bias)
  want_y, want_vjp = jax.vjp(plain, x, scale, bias)
  chex.assert_trees_all_close(y, want_y, atol=2e-5, rtol=1e-5)
  chex.assert_trees_all_close(vjp(cot), want_vjp(cot), atol=2e-4, rtol=1e-4)
  if relu:
    assert np.any(np.asarray(want_y) == 0.0)       # the ReLU does cut


def test_normalize_train_gradient_over_named_axis():
  """Sharded under a named axis: the gradients of the whole batch."""
  rng = np.random.RandomState(7)
  x = rng.randn(2, 8, 4).astype(np.float32)
  w = (rng.rand(2, 8) < 0.7).astype(np.float32)
  w[:, 0] = 1.0
  scale, bias = np.full(4, 1.3, np.float32), np.full(4, 0.1, np.float32)
  cot = rng.randn(2, 8, 4).astype(np.float32)

  def loss(x, scale, bias, w, cot, axis_name):
    y = normalize_train(x, w, scale, bias, EPS, True, axis_name)[0]
    return jnp.sum(y * cot)

  grad = jax.grad(loss, argnums=(0, 1, 2))
  dx, dscale, dbias = jax.vmap(
      lambda *a: grad(*a, 'batch'), in_axes=(0, None, None, 0, 0),
      axis_name='batch')(x, scale, bias, w, cot)
  want = grad(x.reshape(16, 4), scale, bias, w.reshape(16), cot.reshape(16, 4),
              None)
  chex.assert_trees_all_close(dx.reshape(16, 4), want[0], atol=1e-5)
  chex.assert_trees_all_close(dscale.sum(0), want[1], atol=1e-5)
  chex.assert_trees_all_close(dbias.sum(0), want[2], atol=1e-5)


def test_masked_batchnorm_empty_batch_keeps_running_stats():
  x = jnp.ones((2, 3))
  bn = MaskedBatchNorm()
  variables = bn.init(jax.random.key(0), x, jnp.zeros(2), train=False)
  y, upd = bn.apply(variables, x, jnp.zeros(2), train=True,
                    mutable=['batch_stats'])
  assert np.all(np.isfinite(np.asarray(y)))
  chex.assert_trees_all_close(upd['batch_stats'], variables['batch_stats'])


def _stage_case(seed, n=5, h=6, w=5, c=3, o=4, p=0.5):
  rng = np.random.default_rng(seed)
  cap = int(np.ceil(p * h * w))
  active = np.zeros((n, h * w), bool)
  for i in range(n):
    active[i, rng.choice(h * w, rng.integers(0, cap + 1), replace=False)] = 1
  active = active.reshape(n, h, w)
  x = rng.standard_normal((n, h, w, c)).astype(np.float32)
  weight = np.ones(n, np.float32)
  weight[1] = 0.0                                  # a padded frame
  kernels = [rng.standard_normal((3, 3, c, o)).astype(np.float32),
             rng.standard_normal((3, 3, o, o)).astype(np.float32)]
  return x, active, weight, kernels, cap


def test_compact_layout_against_numpy():
  _, active, _, _, cap = _stage_case(3, n=4, h=5, w=4)
  lay = sparse.compact_layout(jnp.asarray(active), cap)
  n_pos = 20
  for f in range(4):
    pos = np.flatnonzero(active[f].reshape(-1))
    expect_index = np.full(cap, n_pos)
    expect_index[:len(pos)] = pos
    np.testing.assert_array_equal(lay.index[f], expect_index)
    ys, xs = np.divmod(pos, 4)
    for slot, (y, x) in enumerate(zip(ys, xs)):
      for d, (dy, dx) in enumerate((a, b) for a in (-1, 0, 1)
                                   for b in (-1, 0, 1)):
        ny, nx = y + dy, x + dx
        inside = 0 <= ny < 5 and 0 <= nx < 4 and active[f, ny % 5, nx % 4]
        want = list(pos).index(ny * 4 + nx) if inside else cap
        assert lay.neighbours[f, slot, d] == want
    assert np.all(np.asarray(lay.neighbours[f, len(pos):]) == cap)
