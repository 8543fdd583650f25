"""1 device == 8 devices, and pmap == shard_map, for the same global batch.

Runs in a subprocess with 8 fake CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``).  MESM at smoke
widths, dropout 0: the model's masked BatchNorm psums its statistics over the
device axis, so 8 devices x 1 clip must compute what 1 device x 8 clips does.
The parameters are updated with SGD here (see the script); Adam and the loop
are covered by test_train.py and test_multihost.py.

Three steps, each taken by every runner from the same state (the 1-device
runner's result of the step before), then compared.  Runners are not left to
follow their own trajectories: their states differ by float32 rounding
(about 5e-7 after one step: the device sums are added in another order), and
the model is not continuous in its parameters: a ReLU passes or stops the
gradient of an entry by its sign, a max-pool picks one input, the nucleus
keeps or drops a position.  Measured: after one step an entry of the audio
block 1 sat at +5.2e-7 before its ReLU in one trajectory and at or below 0 in
the other, so one gradient entry differed by 1.8e-4, the parameters by 1.9e-4
after step 2 and by 0.06 after step 3 (lr 0.5), with every gradient taken
from one state agreeing to 5e-7.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # runs on 1 and 8 devices

SCRIPT = textwrap.dedent('''
    import json, sys
    import jax, numpy as np, optax
    import mesm_jax
    from mesm_jax import restore as restore_lib
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
    model = restore_lib.build_model(config)
    state = loop.init_state(config, model, batch(config, 8, 0))
    # SGD, not Adam: a conv bias right before BatchNorm has a zero gradient in
    # exact arithmetic, and Adam blows its rounding noise up to +-lr steps
    # that differ between layouts (harmless: BatchNorm removes the bias).
    sgd = optax.sgd(0.5)
    state = state.replace(tx=sgd, opt_state=sgd.init(state.params))
    pos_weight = np.linspace(1, 3, 6).astype('float32')
    eval_batch = batch(config, 8, 99)
    eval_batch['clip_mask'][-3:] = False        # padded eval clips
    runners = {f'{name}{n}': parallel.make_runner(name, jax.devices()[:n])
               for name, n in (('pmap', 1), ('pmap', 8), ('shard_map', 8))}
    out = {key: dict(losses=[], step=[], params=[], stats=[])
           for key in runners}
    host = state
    for i in range(3):
      train_batch = batch(config, 8, i + 1)
      after = {}
      for key, runner in runners.items():
        s, m = runner.train_step(runner.put_state(host), train_batch,
                                 pos_weight)
        after[key] = runner.get_state(s)
        out[key]['losses'].append(float(m['loss']))
        out[key]['step'].append(int(after[key].step))
        out[key]['params'].append(
            [x.ravel().tolist() for x in jax.tree.leaves(after[key].params)])
        out[key]['stats'].append(
            [x.ravel().tolist() for x in jax.tree.leaves(after[key].batch_stats)])
      host = after['pmap1']                     # every runner goes on from here
    for key, runner in runners.items():
      ev = runner.eval_step(runner.put_state(host), eval_batch, pos_weight)
      out[key].update(probs=ev['probs'].tolist(), mask=ev['clip_mask'].tolist(),
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
  assert a['step'] == b['step'] == [1, 2, 3]
  np.testing.assert_allclose(a['losses'], b['losses'], rtol=1e-5, atol=atol)
  for step in range(3):
    for x, y in zip(a['params'][step], b['params'][step]):
      np.testing.assert_allclose(x, y, atol=atol, err_msg=f'step {step + 1}')
    for x, y in zip(a['stats'][step], b['stats'][step]):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol,
                                 err_msg=f'step {step + 1}')
  np.testing.assert_allclose(a['probs'], b['probs'], atol=atol)
  assert a['mask'] == b['mask'] == [True] * 5 + [False] * 3
  np.testing.assert_allclose(a['eval_loss'], b['eval_loss'], rtol=1e-5)


def test_one_device_equals_eight_devices(runs):
  assert len(runs['pmap1']['losses']) == 3
  assert runs['pmap1']['losses'][0] != runs['pmap1']['losses'][2]  # it trains
  _assert_same(runs['pmap1'], runs['pmap8'], atol=2e-5)


def test_pmap_equals_shard_map(runs):
  _assert_same(runs['pmap8'], runs['shard_map8'], atol=2e-5)
