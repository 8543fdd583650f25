"""Baselines of Tables 3/4: shapes, padding invariance, gradients, counts.

Applies use tiny widths (``TINY``); paper-width parameter counts use
``jax.eval_shape`` (tracing only, nothing compiled).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesm_jax.models.baselines import BASELINES, build_baseline, emoembs, mult

pytestmark = pytest.mark.usefixtures('fast_compile')
E = 6
B = 2
# Tiny configurations: feature widths (t, a, v) = (8, 6, 10).
DIMS = (8, 6, 10)
TINY = {
    'lf_lstm': dict(feature_dims=DIMS),
    'lf_trans': dict(feature_dims=DIMS, num_heads=(4, 2, 5), trans_nlayers=1,
                     trans_ff_dim=16),
    'mult': dict(feature_dims=DIMS, d_model=10, num_layers=1, mem_layers=1),
    'emoembs': dict(feature_dims=DIMS, hidden_sizes=(8, 6, 4),
                    embedding_dim=8),
}
LENGTHS = {'t': (5, 3), 'a': (6, 2), 'v': (4, 1)}     # real lengths per clip
KEYS = {'t': 'text', 'a': 'audio', 'v': 'vision'}


def count(tree) -> int:
  return jax.tree.reduce(lambda n, x: n + int(np.prod(x.shape)), tree, 0)


def make_batch(seed, extra=0, garbage=1e3, dims=DIMS):
  """Real values at the same places for every seed; padding = ``garbage``
  times noise (NaN when ``garbage`` is NaN), ``extra`` more padded steps."""
  real = np.random.RandomState(0)
  junk = np.random.RandomState(seed)
  batch = {}
  for i, m in enumerate('tav'):
    lens = LENGTHS[m]
    length = max(lens) + extra
    x = real.randn(B, max(lens) + 3, dims[i]).astype(np.float32)[:, :length]
    x = np.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0)))
    mask = np.arange(length)[None] < np.asarray(lens)[:, None]
    noise = junk.randn(*x.shape).astype(np.float32) * garbage
    batch[f'{KEYS[m]}_feats'] = np.where(mask[..., None], x, noise)
    batch[f'{KEYS[m]}_feats_mask'] = mask
  return batch


def tiny(name, modalities, **kw):
  return build_baseline(name, E, modalities, **TINY[name], **kw)


# --- shapes, padding, gradients ----------------------------------------------

def perturbed(batch, modalities):
  """``batch`` and, per modality, a copy whose last real step of clip 1 is
  changed, concatenated along the clip axis: ``B * (1 + M)`` clips."""
  copies = [batch]
  for m in modalities:
    changed = dict(batch)
    x = changed[f'{KEYS[m]}_feats'].copy()
    x[1, LENGTHS[m][1] - 1] += np.linspace(-2, 3, x.shape[-1])  # not a shift
    changed[f'{KEYS[m]}_feats'] = x
    copies.append(changed)
  return {k: np.concatenate([c[k] for c in copies]) for k in batch}


def random_params(model, batch, seed=0):
  """Parameters of ``model`` drawn by numpy (nothing compiled): kernels
  N(0, 1/fan_in), LayerNorm scales 1, other vectors N(0, 0.1^2).  Compiling
  the real ``init`` (orthogonal LSTM kernels, a forward pass) costs more
  than the whole test; ``init`` itself is traced by ``jax.eval_shape``."""
  rng = np.random.RandomState(seed)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), batch))

  def draw(path, s):
    if jax.tree_util.keystr(path).endswith("['scale']"):
      return np.ones(s.shape, np.float32)
    scale = 0.1 if len(s.shape) < 2 else np.prod(s.shape[:-1]) ** -0.5
    return (rng.randn(*s.shape) * scale).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes['params'])


def run(model, modalities, grad):
  """One compile: eval outputs of the perturbed copies and of a longer,
  NaN-padded batch; with ``grad``, the gradient of a train-mode loss on the
  copies with NaN padding and clip 1 made a padding clip (``clip_mask``,
  NaN everywhere)."""
  short, long_ = make_batch(1), make_batch(2, extra=3, garbage=np.nan)
  stacked = perturbed(short, modalities)
  nan_padded = perturbed(make_batch(1, garbage=np.nan), modalities)
  clip_mask = np.arange(len(stacked['text_feats'])) != 1
  grad_batch = dict(nan_padded, clip_mask=clip_mask)
  for m in 'tav':
    x = grad_batch[f'{KEYS[m]}_feats'].copy()
    x[1] = np.nan
    grad_batch[f'{KEYS[m]}_feats'] = x

  @jax.jit
  def f(params, stacked, long_, grad_batch):
    variables = {'params': params}
    res = {'stacked': model.apply(variables, stacked),
           'long': model.apply(variables, long_)}
    if grad:
      def loss(p):
        out = model.apply({'params': p}, grad_batch, train=True,
                          rngs={'dropout': jax.random.key(5)})
        return ((out['logits'] ** 2).sum(-1) * clip_mask).mean()
      res['loss'], res['grads'] = jax.value_and_grad(loss)(params)
    return res
  return f(random_params(model, short), stacked, long_, grad_batch)


def zero_grad_leaves(name, modalities):
  """Parameters whose gradient is exactly 0 by design: a backward LSTM read
  at the last real step has run one step from a zero state (h0 = c0 = 0), so
  its hidden kernels h*, the forget gate's input kernel and its bias get
  nothing (LF-LSTM text; EmoEmbs' last layer, every modality)."""
  gates = ["['hf']['bias']", "['if']['kernel']"] + [
      f"['h{g}']['kernel']" for g in 'ifgo']
  names = {'t': 'text', 'a': 'audio', 'v': 'visual'}
  if name == 'lf_lstm':
    lstms = ['text_lstm'] if 't' in modalities else []
  elif name == 'emoembs':
    lstms = [f'{names[m]}_lstm1' for m in modalities]
  else:
    lstms = []
  return {f"['{l}']['backward']{g}" for l in lstms for g in gates}


# Gradients once per model (MulT's on 'av': its 'tav' backward pass alone
# compiles for ~6 s here, and 'av' runs the same layers).
@pytest.mark.parametrize('name, modalities, grad', [
    ('lf_lstm', 'tav', True), ('lf_lstm', 't', False),
    ('lf_trans', 'tav', True), ('lf_trans', 'av', False),
    ('mult', 'tav', False), ('mult', 'av', True), ('mult', 'v', False),
    ('emoembs', 'tav', True), ('emoembs', 'av', False)])
def test_shapes_padding_and_gradients(name, modalities, grad):
  kw = {}
  if name == 'emoembs' and modalities != 'tav':   # given (frozen) vectors
    kw['emotion_embeddings'] = np.random.RandomState(4).randn(E, 8)
  model = tiny(name, modalities, **kw)
  res = run(model, modalities, grad)
  stacked = res['stacked']
  out = jax.tree.map(lambda x: x[:B], stacked)
  chex.assert_shape(out['logits'], (B, E))
  chex.assert_tree_all_finite(out)
  expected = set() if name == 'mult' else set(modalities)
  assert set(out['modality_logits']) == expected
  chex.assert_shape(list(out['modality_logits'].values()), (B, E))
  # Padding: 3 more steps and NaN instead of noise change nothing.
  chex.assert_trees_all_close(out, res['long'], atol=1e-5, rtol=1e-5)
  # The last real step of each modality of clip 1 reaches the output, and
  # clip 0 does not see clip 1.
  for i, m in enumerate(modalities, start=1):
    changed = stacked['logits'][i * B:(i + 1) * B]
    assert float(jnp.abs(changed[1] - out['logits'][1]).max()) > 1e-6, m
    np.testing.assert_allclose(changed[0], out['logits'][0], atol=1e-6)
  if grad:
    chex.assert_tree_all_finite((res['loss'], res['grads']))
    zero = {jax.tree_util.keystr(p)
            for p, g in jax.tree_util.tree_flatten_with_path(res['grads'])[0]
            if not np.any(np.asarray(g))}
    assert zero == zero_grad_leaves(name, modalities)


def test_build_baseline_errors():
  assert BASELINES == ('lf_lstm', 'lf_trans', 'mult', 'emoembs')
  with pytest.raises(ValueError, match='unknown baseline'):
    build_baseline('lstm', E)
  with pytest.raises(TypeError):
    build_baseline('mult', E, trans_nlayers=2)
  batch = make_batch(1)
  del batch['audio_feats']
  with pytest.raises(KeyError, match='audio_feats'):
    jax.eval_shape(lambda: tiny('lf_lstm', 'ta').init(jax.random.key(0),
                                                     batch))


# --- parameter counts at the paper's widths ----------------------------------

def paper_count(name, modalities='tav', **kw):
  model = build_baseline(name, E, modalities, **kw)
  batch = {}
  for m, d in zip('tav', (300, 144, 35)):
    batch[f'{KEYS[m]}_feats'] = jax.ShapeDtypeStruct((1, 4, d), jnp.float32)
    batch[f'{KEYS[m]}_feats_mask'] = jax.ShapeDtypeStruct((1, 4), jnp.bool_)
  shapes = jax.eval_shape(lambda b: model.init(jax.random.key(0), b), batch)
  return count(shapes['params'])


def test_lf_lstm_param_count():
  # Per modality, hidden H = D; flax's (Optimized)LSTMCell has, per gate
  # (i, f, g, o), an input kernel D*H (no bias) and a hidden kernel H*H with
  # one bias H (PyTorch has two biases, b_ih and b_hh: 4H more per direction):
  #   LSTM  = 2 directions * 4 * (D*H + H*H + H) = 8 * (2 D^2 + D)
  #   head  = 2D*D + D + D*E + E
  #   t D=300: 8 * 180300 = 1442400;  head 180300 + 1806 = 182106
  #   a D=144: 8 *  41616 =  332928;  head  41616 +  870 =  42486
  #   v D=35 : 8 *   2485 =   19880;  head   2485 +  216 =   2701
  #   fusion M = 3
  #   total = 1795208 + 227293 + 3 = 2022504
  def formula(dims, e=E):
    lstm = sum(8 * (2 * d * d + d) for d in dims)
    head = sum(2 * d * d + d + d * e + e for d in dims)
    return lstm + head + (len(dims) if len(dims) > 1 else 0)
  assert formula((300, 144, 35)) == 2022504
  assert paper_count('lf_lstm') == 2022504
  assert paper_count('lf_lstm', 'ta') == formula((300, 144))
  assert paper_count('lf_lstm', 'v') == formula((35,))


def test_lf_trans_param_count():
  # Per modality of width D, per layer (flax MHA: q, k, v, out kernels and
  # biases; feed-forward 2048; two LayerNorms):
  #   attention 4 D^2 + 4 D;  ff 2 * D * 2048 + 2048 + D;  LayerNorms 4 D
  #   t D=300: 360000 + 1200 + 1228800 + 2048 + 300 + 1200 = 1593548
  #   a D=144:  82944 +  576 +  589824 + 2048 + 144 +  576 =  676112
  #   v D=35 :   4900 +  140 +  143360 + 2048 +  35 +  140 =  150623
  #   all three: 2420283 per layer
  # CLS D each: 479.  Head D*(D//2) + D//2 + (D//2)*E + E:
  #   t 45150 + 906 = 46056;  a 10440 + 438 = 10878;  v 612 + 108 = 720
  #   heads 57654;  fusion 3
  # total = 2420283 * n + 479 + 57654 + 3 = 2420283 * n + 58136:
  #   n=1: 2478419;  n=4: 9739268
  def formula(dims, n, e=E):
    layer = sum(4 * d * d + 4 * d + 2 * d * 2048 + 2048 + d + 4 * d
                for d in dims)
    rest = sum(d + d * (d // 2) + d // 2 + (d // 2) * e + e for d in dims)
    return n * layer + rest + (len(dims) if len(dims) > 1 else 0)
  assert formula((300, 144, 35), 1) == 2478419
  assert formula((300, 144, 35), 4) == 9739268
  assert paper_count('lf_trans', trans_nlayers=1) == 2478419
  assert paper_count('lf_trans', trans_nlayers=4) == 9739268
  assert paper_count('lf_trans', 'av', trans_nlayers=2) == formula(
      (144, 35), 2)


def test_mult_param_count():
  """MulT at its defaults, 'tav', E=6: 1,076,736 parameters.

  (Crossmodal encoders 6 x 56010, memories 3 x 220020, Conv1d projections
  14370, residual block 65160, output 1086; the same as the PyTorch
  original, whose attention also has in/out biases.)  With 'ta': 245,046.
  """
  tav, ta = paper_count('mult'), paper_count('mult', 'ta')
  print('MulT parameters: tav', tav, 'ta', ta)
  assert (tav, ta) == (1076736, 245046)


def test_emoembs_param_count():
  """EmoEmbs at the README's widths (300, 200, 100), 2 bidirectional layers,
  'tav', E=6: 5,560,103 with learned emotion embeddings (6 x 300 = 1800 of
  them), 5,558,303 with given (frozen) ones."""
  assert paper_count('emoembs') == 5560103
  given = np.zeros((E, 300), np.float32)
  assert paper_count('emoembs', emotion_embeddings=given) == 5558303


# --- model-specific facts ---------------------------------------------------

def test_mult_attention_mask():
  q = jnp.array([[1, 1, 1, 0]], bool)               # L = 3 real
  k = jnp.array([[1, 1, 1, 1, 1, 0]], bool)         # S = 5 real
  got = np.asarray(mult.attention_mask(q, k, future=True))[0, 0]
  want = np.zeros((4, 6), bool)
  for i in range(4):
    want[i, :min(i + 2, 4) + 1] = True              # j <= i + |5 - 3|
  np.testing.assert_array_equal(got, want)
  no_future = np.asarray(mult.attention_mask(q, k, future=False))[0, 0]
  np.testing.assert_array_equal(no_future, np.broadcast_to(k[0], (4, 6)))


def test_mult_positions_match_fairseq():
  table = mult.sinusoidal_positions(3, 5)            # half 2, odd width
  pos = np.arange(1, 4)[:, None] * np.exp(np.arange(2) * -np.log(1e4))
  want = np.concatenate([np.sin(pos), np.cos(pos), np.zeros((3, 1))], 1)
  np.testing.assert_allclose(table, want, atol=1e-6)


def test_emoembs_given_embeddings_are_constants():
  emb = np.random.RandomState(0).randn(E, 8).astype(np.float32)
  batch = make_batch(1)
  for modalities in ('tav', 'a'):
    model = build_baseline('emoembs', E, modalities, emotion_embeddings=emb,
                           **TINY['emoembs'])
    params = jax.eval_shape(
        lambda: model.init(jax.random.key(0), batch))['params']
    assert 'emotion_embeddings' not in params
    assert ('fusion' in params) == (len(modalities) > 1)
  with pytest.raises(ValueError, match='text hidden size'):
    jax.eval_shape(lambda: build_baseline(
        'emoembs', E, 't', emotion_embeddings=emb[:, :6],
        **TINY['emoembs']).init(jax.random.key(0), batch))


def test_emoembs_fusion_starts_at_the_mean():
  """The original initialises its Linear(M -> 1) to softmax(ones(M))."""
  scores = [jnp.full((B, E), float(i)) for i in range(3)]
  fusion = emoembs.ScoreFusion()
  variables = fusion.init(jax.random.key(0), scores)
  np.testing.assert_allclose(variables['params']['mix']['kernel'],
                             np.full((3, 1), 1 / 3), rtol=1e-6)
  np.testing.assert_allclose(fusion.apply(variables, scores), 1.0,
                             rtol=1e-6)
