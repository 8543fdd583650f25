"""1 device == 8 devices, and pmap == shard_map, for the same global batch.

Runs in a subprocess with 8 fake CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``).  MESM at smoke
widths, dropout 0: the model's masked BatchNorm psums its statistics over the
device axis, so 8 devices x 1 clip must compute what 1 device x 8 clips does.
The parameters are updated with SGD here (see the script); Adam and the loop
are covered by test_train.py and test_resume.py.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent('''
    import json, sys
    import jax, numpy as np, optax
    import mesm_jax
    from mesm_jax.train import loop, parallel

    def batch(config, b, seed):
      r = np.random.default_rng(seed)
      f, c, l = config.max_frames, config.max_chunks, config.text_max_len
      face_mask = np.arange(f)[None] < r.integers(1, f + 1, size=(b, 1))
      spec_mask = np.arange(c)[None] < r.integers(1, c + 1, size=(b, 1))
      faces = r.normal(size=(b, f, 48, 48, 3)) * face_mask[..., None, None, None]
      return dict(
          text_ids=r.integers(1, config.scratch_vocab_size, (b, l)).astype('int32'),
          text_mask=(np.arange(l)[None] < r.integers(3, l, (b, 1))).astype('int32'),
          faces=faces.astype('float32'), face_mask=face_mask,
          spec=(r.random((b, c, 128, 32)) * spec_mask[..., None, None]).astype('float32'),
          spec_mask=spec_mask,
          labels=(r.random((b, 6)) < 0.3).astype('float32'),
          clip_mask=np.ones(b, bool))

    config = mesm_jax.get_config('smoke')
    config.dataset, config.dropout, config.lr = 'synthetic', 0.0, 3e-3
    model = loop.build_model(config)
    state = loop.init_state(config, model, batch(config, 8, 0))
    # SGD, not Adam: a conv bias right before BatchNorm has a zero gradient in
    # exact arithmetic, and Adam blows its rounding noise up to +-lr steps
    # that differ between layouts (harmless: BatchNorm removes the bias).
    sgd = optax.sgd(0.5)
    state = state.replace(tx=sgd, opt_state=sgd.init(state.params))
    pos_weight = np.linspace(1, 3, 6).astype('float32')
    eval_batch = batch(config, 8, 99)
    eval_batch['clip_mask'][-3:] = False        # padded eval clips
    out = {}
    for name, n in (('pmap', 1), ('pmap', 8), ('shard_map', 8)):
      runner = parallel.make_runner(name, jax.devices()[:n])
      s = runner.put_state(state)
      losses = []
      for i in range(3):
        s, m = runner.train_step(s, batch(config, 8, i + 1), pos_weight)
        losses.append(float(m['loss']))
      ev = runner.eval_step(s, eval_batch, pos_weight)
      host = runner.get_state(s)
      out[f'{name}{n}'] = dict(
          losses=losses, step=int(host.step),
          params=[x.ravel().tolist() for x in jax.tree.leaves(host.params)],
          stats=[x.ravel().tolist() for x in jax.tree.leaves(host.batch_stats)],
          probs=ev['probs'].tolist(), mask=ev['clip_mask'].tolist(),
          eval_loss=float(ev['loss_sum'] / ev['loss_count']))
    json.dump(out, sys.stdout)
''')


@pytest.fixture(scope='module')
def runs():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', JAX_DISABLE_MOST_OPTIMIZATIONS='1',
             TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_same(a, b, atol):
  assert a['step'] == b['step'] == 3
  np.testing.assert_allclose(a['losses'], b['losses'], rtol=1e-5, atol=atol)
  for x, y in zip(a['params'], b['params']):
    np.testing.assert_allclose(x, y, atol=atol)
  for x, y in zip(a['stats'], b['stats']):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol)
  np.testing.assert_allclose(a['probs'], b['probs'], atol=atol)
  assert a['mask'] == b['mask'] == [True] * 5 + [False] * 3
  np.testing.assert_allclose(a['eval_loss'], b['eval_loss'], rtol=1e-5)


def test_one_device_equals_eight_devices(runs):
  assert len(runs['pmap1']['losses']) == 3
  assert runs['pmap1']['losses'][0] != runs['pmap1']['losses'][2]  # it trains
  _assert_same(runs['pmap1'], runs['pmap8'], atol=2e-5)


def test_pmap_equals_shard_map(runs):
  _assert_same(runs['pmap8'], runs['shard_map8'], atol=2e-5)
