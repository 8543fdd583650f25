"""experiments/perf/profile_ops.py: op kinds and model parts from a real trace."""


import jax
import jax.numpy as jnp
import numpy as np

from experiments.perf import profile_ops


def test_part_of_reads_the_flax_module_path():
  assert profile_ops.part_of(
      'jit(fb)/jvp(audio_cnn)/audio_cnn._sparse_stage/stage4/dot_general'
  ) == 'audio stage4'
  assert profile_ops.part_of('jit(f)/visual_cnn/stem/layer/conv') == (
      'visual stem')
  assert profile_ops.part_of('jit(f)/transpose') == '(unattributed)'
  assert profile_ops.part_of("variables[1]['params']['stage3']['bn1']") == (
      'stage3')
  assert profile_ops.group_of('audio attn4') == profile_ops.SPARSE_GROUP
  assert profile_ops.group_of('block2').startswith('front')


def test_profile_splits_time_by_kind():
  def f(x, w, idx):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    rows = jnp.take(y.reshape(-1, y.shape[-1]), idx, axis=0)
    return jnp.sum(jnp.tanh(rows @ rows.T))

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((4, 16, 16, 8)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 8, 32)), jnp.float32)
  idx = jnp.asarray(rng.integers(0, 4 * 16 * 16, 512), jnp.int32)
  res = profile_ops.profile(f, x, w, idx, calls=2)
  kinds = res['kind']
  for kind in ('convolution', 'matmul', 'gather'):
    assert kinds.get(kind, 0.0) > 0.0, kinds
  assert all(v >= 0.0 for v in kinds.values())
  assert abs(sum(kinds.values()) - sum(res['part'].values())) < 1e-9
  assert abs(sum(kinds.values()) - sum(res['group'].values())) < 1e-9
