"""``init='pytorch'``: the PyTorch default rules, checked against the formulas.

One MESM at smoke widths with ``trans_dim=64`` (a CLS of 64 entries, Q/K/V
kernels of 4096) is initialised once by Flax; ``pytorch_init`` redraws it.
Each rule is recomputed here from the layer's kind and shape:

  Dense kernel [I,O]: b = 1/sqrt(I); conv kernel [k,k,C,O]: b = 1/sqrt(k k C);
  their bias: the kernel's b; Q/K/V kernels [D,h,Dh]: sqrt(6 / (D + 3D)),
  biases 0; out kernel [h,Dh,D]: 1/sqrt(h Dh), bias 0; CLS N(0, 1);
  fusion mix [M,1]: 1/sqrt(M); norms 1 / 0; text encoder untouched.

The statistical bounds cannot flake: the keys are fixed, and each band is
several standard deviations of its estimate wide (noted at each).
"""

import math

import chex
import jax
import numpy as np
import pytest

import compile_settings

import mesm_jax
from mesm_jax import configs
from mesm_jax.models import INITS, pytorch_init
from mesm_jax import restore as restore_lib
from mesm_jax.train import loop

D = 64          # trans_dim
E = 6


def _batch(modalities='tav', b=1, f=1, c=1, length=6):
  rng = np.random.RandomState(0)
  out = dict(text_ids=rng.randint(0, 64, (b, length)).astype(np.int32),
             text_mask=np.ones((b, length), np.int32),
             labels=np.zeros((b, E), np.float32),
             clip_mask=np.ones((b,), bool))
  if 'v' in modalities:
    out.update(faces=rng.randn(b, f, 48, 48, 3).astype(np.float32),
               face_mask=np.ones((b, f), bool))
  if 'a' in modalities:
    out.update(spec=rng.rand(b, c, 128, 32).astype(np.float32),
               spec_mask=np.ones((b, c), bool))
  return out


@pytest.fixture(scope='module')
def flax_params():
  """Flax's initial ``params`` of MESM (smoke widths, trans_dim 64)."""
  with compile_settings.fast():
    config = mesm_jax.get_config('smoke', 'mesm')
    config.trans_dim = D
    model = mesm_jax.build_model(config)
    batch = _batch()
    variables = jax.jit(lambda: model.init(jax.random.key(0), batch))()
  return jax.device_get(variables['params'])


def _flat(tree):
  return {'/'.join(str(k.key) for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _expected(name, leaves):
  """('uniform', bound) | ('zeros',) | ('normal', std) | ('keep',) by formula."""
  parts = name.split('/')
  leaf, parent = parts[-1], '/'.join(parts[:-1])
  if parts[0] == 'text_encoder' or leaf == 'scale':
    return ('keep',)
  if leaf == 'cls':
    return ('normal', 1.0)
  if '/attention/' in name + '/':
    proj = parts[-2]
    if leaf == 'bias':                  # in_proj_bias and out_proj.bias
      return ('zeros',)
    if proj in ('query', 'key', 'value'):
      d = leaves[name].shape[0]
      return ('uniform', math.sqrt(6 / (d + 3 * d)))
    heads, head_dim, _ = leaves[name].shape   # out_proj, a Linear(D, D)
    return ('uniform', 1 / math.sqrt(heads * head_dim))
  kernel = leaves.get(parent + '/kernel')
  if kernel is None:                    # LayerNorm / BatchNorm bias
    return ('keep',)
  if kernel.ndim == 2:                  # Dense [I,O]
    fan_in = kernel.shape[0]
  else:                                 # conv [kh,kw,C,O]
    kh, kw, cin, _ = kernel.shape
    fan_in = kh * kw * cin
  return ('uniform', 1 / math.sqrt(fan_in))


def test_every_rule_holds(flax_params):
  before = _flat(flax_params)
  after = _flat(pytorch_init(flax_params, jax.random.key(1)))
  kinds = {}
  for name, x in after.items():
    rule = _expected(name, before)
    kinds[rule[0]] = kinds.get(rule[0], 0) + 1
    if rule[0] == 'keep':
      np.testing.assert_array_equal(x, before[name], err_msg=name)
    elif rule[0] == 'zeros':
      np.testing.assert_array_equal(x, 0, err_msg=name)
    elif rule[0] == 'uniform':
      b = rule[1]
      assert np.abs(x).max() <= b * (1 + 1e-6), name
      if x.size >= 200:   # P(max |w| < 0.9 b) = 0.9^n < 1e-9
        assert np.abs(x).max() > 0.9 * b, name
      if x.size >= 1000:  # the sample std's error: ~0.45/sqrt(n) < 1.5 %
        assert abs(x.std() / (b / math.sqrt(3)) - 1) < 0.1, name
      assert not np.array_equal(x, before[name]), name
  # Every family is present (the names above really match the tree).
  assert kinds['uniform'] > 60 and kinds['zeros'] == 8 and kinds['normal'] == 2
  assert kinds['keep'] > 20


def test_specific_layers(flax_params):
  after = _flat(pytorch_init(flax_params, jax.random.key(2)))
  attn = 'visual_transformer/encoder/layer0/attention'
  for proj in ('query', 'key', 'value'):
    k = after[f'{attn}/{proj}/kernel']
    chex.assert_shape(k, (D, 2, D // 2))
    assert 0.9 * math.sqrt(6 / (4 * D)) < np.abs(k).max() <= math.sqrt(
        6 / (4 * D))
    np.testing.assert_array_equal(after[f'{attn}/{proj}/bias'], 0)
  np.testing.assert_array_equal(after[f'{attn}/out/bias'], 0)
  assert np.abs(after[f'{attn}/out/kernel']).max() <= 1 / math.sqrt(D)
  fc1 = after['visual_cnn/fc1/kernel']        # flatten 3x3x16 -> 16
  assert np.abs(fc1).max() <= 1 / math.sqrt(3 * 3 * 16)
  assert np.abs(after['visual_cnn/fc1/bias']).max() <= 1 / math.sqrt(144)
  assert np.abs(after['visual_cnn/stage5/conv2/kernel']).max() <= 1 / 12
  stem = after['audio_cnn/stem/layer/conv/kernel']   # 5x5x1
  assert np.abs(stem).max() <= 1 / 5 and np.abs(stem).max() > 0.9 / 5
  mix = after['fusion/mix/kernel']            # M = 3 modalities
  chex.assert_shape(mix, (3, 1))
  assert np.abs(mix).max() <= 1 / math.sqrt(3) and np.ptp(mix) > 0
  for norm in ('visual_cnn/block1/bn1', 'audio_transformer/encoder/layer0/'
               'norm2'):
    np.testing.assert_array_equal(after[f'{norm}/scale'], 1)
    np.testing.assert_array_equal(after[f'{norm}/bias'], 0)


def test_cls_is_standard_normal(flax_params):
  # 2 CLS x 64 x 4 keys = 512 N(0, 1) draws: the sample std's sd is
  # 1/sqrt(2 * 512) = 0.031, the band 0.85..1.15 is ~5 sd wide.
  draws = np.concatenate([
      np.asarray(pytorch_init(flax_params, jax.random.key(s))[m]['cls'])
      for s in range(4) for m in ('visual_transformer', 'audio_transformer')])
  assert 0.85 < draws.std() < 1.15 and abs(draws.mean()) < 0.2
  # Flax's N(0, 0.02) is what it replaces.
  assert np.asarray(flax_params['visual_transformer']['cls']).std() < 0.1


def test_text_encoder_tree_shapes_and_dtypes_are_kept(flax_params):
  new = pytorch_init(flax_params, jax.random.key(3))
  chex.assert_trees_all_equal_structs(new, flax_params)
  chex.assert_trees_all_equal_shapes_and_dtypes(new, flax_params)
  chex.assert_trees_all_equal(new['text_encoder'], flax_params['text_encoder'])
  # numpy in, numpy out; JAX in, JAX out; the same values either way.
  assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(new))
  on_device = pytorch_init(jax.device_put(flax_params), jax.random.key(3))
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(on_device))
  chex.assert_trees_all_equal(jax.device_get(on_device), new)


def test_deterministic_given_the_key(flax_params):
  a = pytorch_init(flax_params, jax.random.key(5))
  chex.assert_trees_all_equal(a, pytorch_init(flax_params, jax.random.key(5)))
  b = pytorch_init(flax_params, jax.random.key(6))
  assert not np.array_equal(a['visual_head']['kernel'],
                            b['visual_head']['kernel'])
  # Per path, not per position: another tree draws the same values for it.
  alone = pytorch_init({'visual_head': flax_params['visual_head']},
                       jax.random.key(5))
  chex.assert_trees_all_equal(alone['visual_head'], a['visual_head'])


def test_unknown_parameter_is_an_error():
  with pytest.raises(ValueError, match='head/embedding'):
    pytorch_init({'head': {'embedding': np.zeros((3, 2), np.float32)}},
                 jax.random.key(0))


def test_init_state_dispatches_on_config_init():
  """'flax' keeps model.init's values, 'pytorch' redraws (text encoder kept)."""
  assert set(configs.CHOICES['init']) == set(INITS)
  assert mesm_jax.get_config('mosei')['init'] == 'pytorch'
  states = {}
  for init in INITS:
    config = mesm_jax.get_config('smoke', 'fe2e')
    config.modalities, config.init = 't', init
    model = restore_lib.build_model(config)
    states[init] = loop.init_state(config, model, _batch('t')).params
  flax, torch = states['flax'], states['pytorch']
  chex.assert_trees_all_equal(torch['text_encoder'], flax['text_encoder'])
  chex.assert_trees_all_equal_shapes_and_dtypes(torch, flax)
  np.testing.assert_array_equal(flax['text_head']['bias'], 0)   # Flax: zeros
  bound = 1 / math.sqrt(flax['text_head']['kernel'].shape[0])
  assert 0 < np.abs(torch['text_head']['bias']).max() <= bound
  assert np.abs(torch['text_head']['kernel']).max() <= bound
  config.init = 'bogus'   # the one validation, which build_model runs too
  with pytest.raises(ValueError, match='init must be one of'):
    configs.check(config)
  with pytest.raises(ValueError, match='init must be one of'):
    restore_lib.build_model(config)


# ------------------------------------------- against PyTorch's own draws


def _torch_draws(make, n):
  """Weights of ``n`` freshly built PyTorch modules, flattened."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  out = {}
  for _ in range(n):
    for k, v in make().items():
      out.setdefault(k, []).append(v.detach().numpy().ravel())
  return {k: np.concatenate(v) for k, v in out.items()}


def _ours(flax_params, name, keys=8):
  return np.concatenate([
      _flat(pytorch_init(flax_params, jax.random.key(100 + s)))[name].ravel()
      for s in range(keys)])


def test_laws_match_pytorchs_own_initialisation(flax_params):
  """Two-sample Kolmogorov-Smirnov tests of our draws against the weights of
  the PyTorch modules that the original builds (nn.Linear, nn.Conv2d,
  nn.MultiheadAttention, torch.randn for the CLS), initialised by PyTorch
  itself, not by a formula written here.  Fixed seeds: the p-values are
  deterministic; a wrong law (e.g. fan-out for fan-in, a 3x wider bound)
  gives p < 1e-20 at these sample sizes (checked below), a right one
  p >> 1e-4."""
  import torch  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  nn = torch.nn
  attn = 'visual_transformer/encoder/layer0/attention'
  mha = lambda: nn.MultiheadAttention(D, 2)            # smoke: 2 heads
  cases = {
      # fc1: Linear(3*3*16 -> 16); stored [I, O], torch [O, I].
      'visual_cnn/fc1/kernel': (lambda: {'w': nn.Linear(144, 16).weight}, 'w'),
      'visual_cnn/fc1/bias': (lambda: {'b': nn.Linear(144, 16).bias}, 'b'),
      'visual_cnn/stage5/conv2/kernel': (
          lambda: {'w': nn.Conv2d(16, 16, 3).weight}, 'w'),
      'audio_cnn/stem/layer/conv/kernel': (
          lambda: {'w': nn.Conv2d(1, 4, 5).weight}, 'w'),
      f'{attn}/query/kernel': (lambda: {'w': mha().in_proj_weight}, 'w'),
      f'{attn}/out/kernel': (lambda: {'w': mha().out_proj.weight}, 'w'),
      'visual_transformer/cls': (lambda: {'c': torch.randn(1, 1, D)}, 'c'),
  }
  p_values = {}
  for name, (make, key) in cases.items():
    ours = _ours(flax_params, name)
    theirs = _torch_draws(make, max(1, 4 * ours.size // max(
        make()[key].numel(), 1)))[key]
    p_values[name] = stats.ks_2samp(ours, theirs).pvalue
  assert all(p > 1e-4 for p in p_values.values()), p_values
  # The test can fail: fan-out instead of fan-in for fc1 (bound 1/4, not
  # 1/12), and the query kernel's bound from D alone (sqrt(6 / 2D)).
  fc1 = _ours(flax_params, 'visual_cnn/fc1/kernel')
  wrong = _torch_draws(lambda: {'w': nn.Linear(16, 144).weight}, 4)['w']
  assert stats.ks_2samp(fc1, wrong).pvalue < 1e-20
  query = _ours(flax_params, f'{attn}/query/kernel')
  wrong = _torch_draws(lambda: {'w': nn.Linear(D, D).weight}, 32)['w'] * 3
  assert stats.ks_2samp(query, wrong).pvalue < 1e-20
