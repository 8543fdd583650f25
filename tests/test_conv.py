"""Dense convolutions whose kernel gradient is summed over frame chunks
(mesm_jax/models/conv.py)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mesm_jax
from experiments.perf import compute
from mesm_jax.models import conv as conv_lib


def numpy_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """'Same' stride-1 convolution by summing shifted copies (float64)."""
  n, h, w, _ = x.shape
  k = kernel.shape[0]
  p = k // 2
  xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
  out = np.zeros((n, h, w, kernel.shape[-1]))
  for dy in range(k):
    for dx in range(k):
      out += xp[:, dy:dy + h, dx:dx + w] @ kernel[dy, dx].astype(np.float64)
  return out


@pytest.mark.parametrize('n,chunk', [(1, 4), (4, 4), (5, 4), (61, 16), (9, 8),
                                     (7, 0), (7, -5), (33, 1)])
def test_frame_chunks_cover_the_frames_in_balanced_pieces(n, chunk):
  pieces = conv_lib.frame_chunks(n, chunk)
  starts = [s for s, _ in pieces]
  sizes = [m for _, m in pieces]
  assert sum(sizes) == n
  assert starts == list(np.cumsum([0] + sizes[:-1]))
  if chunk <= 0 or n <= chunk:
    assert pieces == [(0, n)]
  else:
    assert max(sizes) <= chunk and max(sizes) - min(sizes) <= 1
    assert len(pieces) == -(-n // chunk)


def test_frame_chunks_example():
  assert conv_lib.frame_chunks(61, 16) == [(0, 16), (16, 15), (31, 15),
                                           (46, 15)]


@pytest.mark.parametrize('k,chunk', [(3, 0), (3, 2), (5, 3), (3, 1)])
def test_conv2d_matches_numpy_values_and_gradients(k, chunk):
  rng = np.random.default_rng(k * 10 + chunk)
  x = rng.standard_normal((7, 6, 5, 3)).astype(np.float32)
  kernel = rng.standard_normal((k, k, 3, 4)).astype(np.float32)
  y = conv_lib.conv2d(jnp.asarray(x), jnp.asarray(kernel), chunk)
  chex.assert_shape(y, (7, 6, 5, 4))
  np.testing.assert_allclose(y, numpy_conv(x, kernel), rtol=1e-5, atol=1e-4)
  # Only the kernel gradient is chunked: the forward pass is the unsplit one.
  np.testing.assert_array_equal(
      y, conv_lib.conv2d(jnp.asarray(x), jnp.asarray(kernel), 0))
  # Gradients against the unsplit convolution's (which the numpy reference
  # already pins down), for a loss that weighs every output differently.
  g = rng.standard_normal((7, 6, 5, 4)).astype(np.float32)

  def loss(x, kern, c):
    return jnp.sum(conv_lib.conv2d(x, kern, c) * g)

  got = jax.grad(loss, argnums=(0, 1))(x, kernel, chunk)
  want = jax.grad(loss, argnums=(0, 1))(x, kernel, 0)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
  # And the kernel gradient against numpy: sum over positions of x^T g.
  p = k // 2
  xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
  dk = np.stack([np.stack([
      np.einsum('nhwc,nhwo->co', xp[:, dy:dy + 6, dx:dx + 5], g)
      for dx in range(k)]) for dy in range(k)])
  np.testing.assert_allclose(got[1], dk, rtol=1e-4, atol=1e-3)


def test_chunked_kernel_gradient_in_bfloat16():
  """bf16: the chunked kernel gradient stays as close to the float64 one
  as the unsplit bf16 gradient is, and keeps the kernel's dtype."""
  rng = np.random.default_rng(3)
  x = rng.standard_normal((12, 6, 6, 8)).astype(np.float32)
  kernel = (rng.standard_normal((3, 3, 8, 8)) * 0.3).astype(np.float32)
  g = rng.standard_normal((12, 6, 6, 8)).astype(np.float32)
  xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.stack([np.stack([
      np.einsum('nhwc,nhwo->co', xp[:, dy:dy + 6, dx:dx + 6], g)
      for dx in range(3)]) for dy in range(3)])

  def dk(chunk):
    _, fn = jax.vjp(lambda k: conv_lib.conv2d(
        jnp.asarray(x, jnp.bfloat16), k, chunk), jnp.asarray(kernel, jnp.bfloat16))
    (d,) = fn(jnp.asarray(g, jnp.bfloat16))
    return d

  chunked, whole = dk(5), dk(0)
  assert chunked.dtype == whole.dtype == jnp.bfloat16
  err = np.abs(np.asarray(chunked, np.float64) - want).max()
  err_whole = np.abs(np.asarray(whole, np.float64) - want).max()
  assert err <= 2 * err_whole + 1e-3 * np.abs(want).max()


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_conv_module_is_nn_conv(dtype):
  """Same parameter tree and initial values as nn.Conv, same outputs."""
  x = jax.random.normal(jax.random.key(0), (6, 8, 8, 3))
  ref = nn.Conv(5, (3, 3), padding=1, dtype=dtype)
  ours = conv_lib.Conv(5, 3, chunk=4, dtype=dtype)
  v_ref = ref.init(jax.random.key(1), x)
  v_ours = ours.init(jax.random.key(1), x)
  chex.assert_trees_all_equal_shapes_and_dtypes(v_ref, v_ours)
  chex.assert_trees_all_equal(v_ref, v_ours)
  # A bias that is not zero, so that it is checked too.
  v = jax.tree.map(lambda a: a + 0.1, v_ref)
  y_ref, y_ours = ref.apply(v, x), ours.apply(v, x)
  assert y_ours.dtype == y_ref.dtype == dtype
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(np.asarray(y_ours, np.float32),
                             np.asarray(y_ref, np.float32), rtol=tol, atol=tol)


def test_resolve_chunk():
  assert conv_lib.resolve_chunk(0) == 0
  assert conv_lib.resolve_chunk(7) == 7
  want = conv_lib.CPU_CHUNK if jax.default_backend() == 'cpu' else 0
  assert conv_lib.resolve_chunk(-1) == want
  with pytest.raises(ValueError, match='conv_chunk'):
    conv_lib.resolve_chunk(-2)


def test_conv_chunk_follows_the_platform_compiled_for():
  # -1 is the platform's choice, made when the model is built: a program
  # compiled on this CPU for a TPU gets the TPU's (one piece).
  assert conv_lib.resolve_chunk(-1, 'cpu') == conv_lib.CPU_CHUNK == 16
  assert conv_lib.resolve_chunk(-1, 'tpu') == conv_lib.resolve_chunk(
      -1, 'gpu') == 0
  config = mesm_jax.get_config('smoke')
  assert mesm_jax.build_model(config, platform='tpu').conv_chunk == 0
  assert mesm_jax.build_model(config, platform='cpu').conv_chunk == 16
  config.conv_chunk = 5
  assert mesm_jax.build_model(config, platform='tpu').conv_chunk == 5


def test_build_model_refuses_a_bad_conv_chunk():
  config = mesm_jax.get_config('smoke')
  config.conv_chunk = -3
  with pytest.raises(ValueError, match='conv_chunk'):
    mesm_jax.build_model(config)


@pytest.mark.slow  # compiles whole models: not in the quick subset
@pytest.mark.usefixtures('fast_compile')
@pytest.mark.parametrize('kind,impl', [('fe2e', 'masked'), ('mesm', 'masked'),
                                       ('mesm', 'gathered')])
def test_frame_cnn_same_with_and_without_chunks(kind, impl):
  """The whole CNN, train mode: outputs and parameter gradients agree."""
  base = mesm_jax.get_config('smoke')
  config = compute.model_config(base, kind, 0.5, impl)
  batch = compute.make_batch(base, 2, 5, 3)
  x, w = compute.cnn_inputs(batch, 'visual')
  q = np.random.default_rng(0).standard_normal(
      (x.shape[0], base.scratch_text_dim)).astype(np.float32)
  results = []
  for chunk in (0, 3):
    config.conv_chunk = chunk
    cnn = compute.frame_cnn(config, 'visual_cnn')
    variables = cnn.init(jax.random.key(0), x, w, q, True)

    def loss(params, cnn=cnn, variables=variables):
      (y, _), _ = cnn.apply({**variables, 'params': params}, x, w, q, True,
                            mutable=['batch_stats'])
      return jnp.sum(y * jnp.arange(y.shape[-1])), y

    (_, y), grads = jax.value_and_grad(loss, has_aux=True)(variables['params'])
    results.append((variables['params'], y, grads))
  (p0, y0, g0), (p1, y1, g1) = results
  chex.assert_trees_all_equal(p0, p1)
  np.testing.assert_allclose(y0, y1, rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(g0, g1, rtol=2e-3, atol=2e-4)
