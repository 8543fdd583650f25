"""experiments/perf/compute.py (FLOP accounting, timers, compile presets) and the benchmark scripts."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import flops
from experiments.perf import benchmark
from experiments.perf import compute


@pytest.mark.parametrize('h,w,k,cin,cout', [(12, 10, 3, 4, 8), (9, 9, 5, 3, 2)])
def test_xla_conv_flops_match_formula(h, w, k, cin, cout):
  x = jnp.ones((1, h, w, cin))
  kernel = jnp.ones((k, k, cin, cout))
  conv = lambda x, kernel: jax.lax.conv_general_dilated(
      x, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  # XLA counts the taps that fall inside the map (padding is free).
  inside = sum(0 <= y + dy < h and 0 <= x + dx < w
               for y in range(h) for x in range(w)
               for dy in range(-(k // 2), k // 2 + 1)
               for dx in range(-(k // 2), k // 2 + 1))
  assert compute.xla_flops(conv, x, kernel) == 2 * inside * cin * cout
  assert compute.conv_flops(h, w, k, cin, cout, padded=False) == (
      2 * inside * cin * cout)
  assert compute.conv_flops(h, w, k, cin, cout) == 2 * h * w * k * k * cin * cout


def test_effective_flops_hand_count():
  # Visual stages of widths (4, 8, 8, 16): 24x24 4->8, 12x12 8->8, 6x6 8->16.
  kept = {3: 0.5, 4: 0.25, 5: 1.0}
  per_pos = {3: 2 * 9 * (4 * 8 + 8 * 8), 4: 2 * 9 * (8 * 8 + 8 * 8)}
  saved = 0.5 * 576 * per_pos[3] + 0.75 * 144 * per_pos[4]
  got = compute.effective_cnn_flops(1e7, 'visual', (4, 8, 8, 16), kept,
                                    frames=3, extra=100.0)
  assert got == pytest.approx(1e7 - 3 * saved + 100.0)
  geo = compute.stage_geometry('audio', (4, 8, 8, 16))
  assert [g[1:3] for g in geo] == [(64, 16), (32, 8), (16, 4)]


def test_clip_sizes():
  # 24 s at 16 kHz, hop 200: 1921 centred frames -> 61 chunks of 32.
  assert compute.clip_sizes(24.0) == (48, 61)
  assert compute.clip_sizes(4.5) == (9, 12)


@pytest.mark.slow  # compiles whole models: not in the quick subset
@pytest.mark.usefixtures('fast_compile')
def test_flops_script_smoke():
  rows = flops.main(
      ['--widths', 'smoke', '--text', 'config', '--clips', 'iemocap',
       '--top_ps', '0.5', '--impls', 'gathered', '--kept_batch', '1'])
  fe2e, gathered = rows
  for r in rows:
    assert r['total'] == pytest.approx(
        r['text'] + r['visual_cnn'] + r['audio_cnn'] + r['rest'])
  assert gathered['cnn'] < 0.9 * fe2e['cnn']       # capacity K = n / 2
  assert gathered['cnn_effective'] < gathered['cnn']
  assert 0 < gathered['kept']['visual'][3] <= 0.5 + 1 / 576


@pytest.mark.slow  # compiles whole models: not in the quick subset
@pytest.mark.usefixtures('fast_compile')
def test_benchmark_script_smoke():
  out = benchmark.main(
      ['--widths', 'smoke', '--sections', 'stages', '--repeats', '1',
       '--batch', '1', '--frames', '2', '--chunks', '1', '--top_ps', '0.5',
       '--impls', 'gathered', '--keep_freed_memory', 'false',
       '--compile_presets', 'default,ynn_all'])
  # (--conv_chunks: test_benchmark_conv_chunks_reach_the_model.)
  assert set(out['stages']) == {
      f'{v}{preset}' for v in ('FE2E', 'MESM p=0.5 gathered')
      for preset in ('', ' [ynn_all]')}
  assert all(v > 0 for v in out['stages'].values())
  assert out['peak_bytes'] > 0


def test_benchmark_conv_chunks_reach_the_model():
  """Each ``--conv_chunks`` value builds its variants with that config."""
  bench = benchmark
  args = bench.parse(['--conv_chunks', 'auto,0,4', '--top_ps', '0.5',
                      '--impls', 'gathered'])
  base = bench.base_config('smoke')
  got = [(label, cbase.conv_chunk) for label, *_, cbase
         in bench.compiled_variants(args, compute.Timer(), base)]
  assert got == [('FE2E', -1), ('MESM p=0.5 gathered', -1),
                 ('FE2E [conv_chunk 0]', 0),
                 ('MESM p=0.5 gathered [conv_chunk 0]', 0),
                 ('FE2E [conv_chunk 4]', 4),
                 ('MESM p=0.5 gathered [conv_chunk 4]', 4)]
  assert base.conv_chunk == -1      # the base config is left as it was


@pytest.mark.parametrize('flag,value,message', [
    ('--compile_presets', 'default,fastest', "unknown --compile_presets ['fastest']"),
    ('--conv_chunks', '0,-4', "--conv_chunks takes auto (or -1), 0 or frame "
     "counts, comma-separated; got '0,-4'"),
    ('--conv_chunks', 'auto,16x', "got 'auto,16x'")])
def test_benchmark_rejects_bad_options(capsys, flag, value, message):
  with pytest.raises(SystemExit):
    benchmark.parse([f'{flag}={value}'])
  assert message in capsys.readouterr().err


def test_timer_keeps_every_call_and_reports_medians():
  """What the Timer records, not how fast anything is (timings belong to
  the benchmarks, not to the tests)."""
  timer = compute.Timer(repeats=3, warmup=1)
  timer.add('tanh', jnp.tanh, jnp.ones((8,)))
  timer.add('sum', jnp.sum, jnp.ones((8,)))
  wall, cpu = timer.run(), timer.cpu_seconds()
  assert set(wall) == set(cpu) == set(timer.compile_s) == {'tanh', 'sum'}
  for name in ('tanh', 'sum'):
    assert len(timer.times[name]) == len(timer.cpu[name]) == 3
    assert wall[name] == float(np.median(timer.times[name]))
    assert cpu[name] == float(np.median(timer.cpu[name]))
  assert set(timer.memory['tanh']) >= {'temp', 'argument', 'output'}


@pytest.mark.skipif(jax.default_backend() != 'cpu',
                    reason='XLA:CPU compile presets (empty on other backends)')
def test_compile_presets_reach_xla_and_keep_the_numbers():
  """``ynn_all`` is passed to XLA (a bad value is refused there) and
  computes what the default compilation computes."""
  with pytest.raises(ValueError, match='unknown compile preset'):
    compute.compile_options('fastest')
  assert compute.compile_options('default') == {}
  options = compute.compile_options('ynn_all')
  assert set(options) == {'xla_cpu_experimental_ynn_fusion_type'}

  def f(x, w):      # a matmul, a reduction and elementwise ops, as in BN
    y = x @ w
    y = (y - y.mean(0)) * jax.lax.rsqrt(y.var(0) + 1e-5)
    return jnp.maximum(y, 0.0)

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((256, 64)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((64, 96)), jnp.float32)
  timer = compute.Timer(repeats=1, warmup=0)
  timer.compiler_options['ynn'] = options
  timer.add('default', f, x, w)
  timer.add('ynn', f, x, w)
  outs = {k: np.asarray(c(*a)) for k, (c, a) in timer.fns.items()}
  np.testing.assert_allclose(outs['ynn'], outs['default'], atol=1e-5)
  np.testing.assert_allclose(outs['default'], np.asarray(f(x, w)), atol=1e-5)
  timer.compiler_options['bad'] = {
      'xla_cpu_experimental_ynn_fusion_type': 'NOT_A_FUSION_TYPE'}
  with pytest.raises(Exception, match='not a valid enum value'):
    timer.add('bad', f, x, w)
