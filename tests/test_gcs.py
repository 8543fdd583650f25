"""Work and data directories on Cloud Storage (``gs://``), on an emulator.

``tests/gcs_emulator.py`` runs fake-gcs-server on 127.0.0.1 with a TLS proxy
in front, so that every client reaches it: TensorFlow's gs:// client
(tf.io.gfile, and through it etils.epath, TFDS, tf.data and tf.summary),
tensorstore (orbax's arrays) and google-cloud-storage (orbax asks it about
the bucket).  Nothing reaches the network.

* ``data_pipelines.paths``' rules, locally and on the bucket;
* one tiny MESM run (smoke widths, 12 synthetic clips, one epoch of 4
  steps) with ``--workdir gs://bkt/runs/tiny --data_dir gs://bkt/tfds``:
  the TFDS data built into the bucket, the run SIGKILLed after its first
  checkpoint (step 2) and the logging of step 3, then run again: it resumes
  from the bucket's checkpoint and computes step 3's loss again exactly;
  then ``--eval_only``, ``experiments/predict.py`` (with ``--attention``)
  and ``experiments/visualize.py`` on that work directory, all writing to
  the bucket.  One test: no other test waits for (or repeats) the run;
* ``experiments/tables.py`` over finished runs on the bucket;
* ``experiments/sweep.py`` with ``--workdirs gs://...`` (one baseline cell
  whose FLOPs are left: its subprocess, logs and records on the bucket).
"""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from etils import epath
import numpy as np
import pytest

from data_pipelines import paths
import gcs_emulator

pytestmark = pytest.mark.slow  # a Cloud Storage emulator and runs on it

ROOT = Path(__file__).resolve().parents[1]
BUCKET = 'gs://bkt'
RUN = f'{BUCKET}/runs/tiny'
DATA = f'{BUCKET}/tfds'
# A tiny MESM run: smoke widths, scratch text encoder, one length bucket,
# 12 synthetic clips ('center' faces), batches of 2, one epoch of 4 steps,
# a checkpoint every 2 steps (and at the end).
TINY = ['--dataset', 'synthetic', '--synthetic_clips', '12',
        '--cnn_features', '4,8,8,16', '--cnn_fc_dim', '16', '--trans_dim', '8',
        '--trans_nlayers', '1', '--trans_nheads', '2', '--trans_ff_dim', '16',
        '--text_model', 'scratch', '--scratch_vocab_size', '64',
        '--scratch_text_dim', '16', '--scratch_text_layers', '1',
        '--scratch_text_heads', '2', '--scratch_text_ff_dim', '32',
        '--text_max_len', '12', '--max_frames', '1', '--max_chunks', '1',
        '--batch_size', '2', '--eval_batch_size', '4', '--epochs', '1',
        '--early_stop', '0', '--checkpoint_every_steps', '2',
        '--log_every_steps', '1', '--deterministic_input', 'true',
        '--lr', '1e-3', '--face_detector', 'center', '--data_dir', DATA]
TIMEOUT = 600


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  """The emulator, its variables set in this process too (and restored)."""
  with gcs_emulator.GcsEmulator(tmp_path_factory.mktemp('gcs')) as emulator:
    saved = {k: os.environ.get(k) for k in emulator.env()}
    os.environ.update(emulator.env())
    try:
      yield emulator
    finally:
      for k, v in saved.items():
        if v is None:
          os.environ.pop(k, None)
        else:
          os.environ[k] = v


# ---------------------------------------------------------------- the rules


def test_paths_keep_urls_and_expand_local_paths(tmp_path, monkeypatch):
  assert str(Path('gs://b/run') / 'config.json') == 'gs:/b/run/config.json'
  assert str(paths.as_path('gs://b/run') / 'config.json') == (
      'gs://b/run/config.json')
  assert paths.is_remote('gs://b/run') and not paths.is_remote('/tmp/run')
  assert str(paths.absolute('gs://b/run')) == 'gs://b/run'
  monkeypatch.setenv('HOME', str(tmp_path))
  monkeypatch.chdir(tmp_path)
  assert str(paths.as_path('~/run')) == str(tmp_path / 'run')
  assert str(paths.absolute('run')) == str(tmp_path / 'run')
  (tmp_path / 'real').mkdir()
  (tmp_path / 'link').symlink_to(tmp_path / 'real')
  assert str(paths.absolute('link')) == str(tmp_path / 'link')
  assert str(paths.resolve('link')) == str(tmp_path / 'real')
  # What must be a local file: the path itself, or a folder named after
  # the URL under the cache.
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  assert paths.local_path(tmp_path / 'x') == tmp_path / 'x'
  assert paths.local_path('gs://b/tfds/downloads') == (
      tmp_path / 'cache' / 'mesm-jax' / 'gs' / 'b' / 'tfds' / 'downloads')


def test_local_writes_are_atomic_and_logs_append(tmp_path, monkeypatch):
  target = tmp_path / 'w' / 'results.json'
  paths.write_text_atomic(target, 'old')
  assert target.read_text() == 'old'

  def fail(fd):
    raise OSError('disk full')

  monkeypatch.setattr(os, 'fsync', fail)   # dies before the rename
  with pytest.raises(OSError, match='disk full'):
    paths.write_text_atomic(target, 'new')
  monkeypatch.undo()
  assert target.read_text() == 'old'
  assert sorted(p.name for p in target.parent.iterdir()) == ['results.json']
  log = tmp_path / 'metrics.jsonl'
  log.write_text('{"step": 1}\n')
  paths.JsonLines(log).append({'step': 2, 'a': 0.5})
  paths.append_text(log, 'end\n')
  assert log.read_text() == '{"step": 1}\n{"a": 0.5, "step": 2}\nend\n'


def test_bucket_writes_and_logs(gcs):
  """One upload per write; a log read once, then uploaded whole."""
  target = epath.Path(f'{BUCKET}/rules/results.json')
  paths.write_text_atomic(target, '{"a": 1}')
  paths.write_text_atomic(target, '{"a": 2}')
  assert gcs.read('rules/results.json') == b'{"a": 2}'
  assert gcs.objects(prefix='rules/') == ['rules/results.json']  # no temp
  gcs.write('rules/metrics.jsonl', b'{"step": 1}\n')  # a run before a kill
  log = paths.JsonLines(f'{BUCKET}/rules/metrics.jsonl')
  log.append({'step': 2})
  assert gcs.read('rules/metrics.jsonl') == b'{"step": 1}\n{"step": 2}\n'
  gcs.write('rules/metrics.jsonl', b'lost\n')  # read once: not read again
  log.append({'step': 3})
  assert gcs.read('rules/metrics.jsonl') == (
      b'{"step": 1}\n{"step": 2}\n{"step": 3}\n')
  paths.append_text(f'{BUCKET}/rules/sweep.log', 'a\n')
  paths.append_text(f'{BUCKET}/rules/sweep.log', 'b\n')
  assert gcs.read('rules/sweep.log') == b'a\nb\n'
  gcs.write('rules/w/checkpoints/1/config.json', b'{}')
  gcs.write('rules/w/config.json', b'{}')
  assert [str(p) for p in paths.find_files(
      f'{BUCKET}/rules', 'config.json', skip=('checkpoints',))] == [
          f'{BUCKET}/rules/w/config.json']


def test_beam_build_into_a_bucket_is_refused(gcs):
  """Beam workers share the build's cache, which is local for a bucket."""
  import mesm_jax  # pylint: disable=g-import-not-at-top
  from data_pipelines.tfds import prepare  # pylint: disable=g-import-not-at-top
  from mesm_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  config = input_pipeline.builder_config(mesm_jax.get_config('smoke'))
  with pytest.raises(ValueError, match='beam_options: .*gs://bkt/beam'):
    prepare.prepare('synthetic', config, data_dir=f'{BUCKET}/beam',
                    beam_options='runner=DirectRunner')
  assert not gcs.objects('beam/')


# ---------------------------------------------------------------- a run


def _env(tmp_path, gcs):
  return dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
              JAX_DISABLE_MOST_OPTIMIZATIONS='1',
              JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
              XDG_CACHE_HOME=str(tmp_path / 'cache'), **gcs.env())


def _run(env, *argv, script='run.py'):
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'experiments' / script), *argv], env=env,
      capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def _committed_steps(gcs, kind='latest'):
  """Steps of a manager whose checkpoint orbax marked complete."""
  prefix = f'runs/tiny/checkpoints/{kind}/'
  return sorted(int(n[len(prefix):].split('/')[0])
                for n in gcs.objects(prefix=prefix)
                if n.endswith('/commit_success.txt') and n.count('/') == 5)


def _train_losses(gcs):
  """(step, train/loss) of every training line of metrics.jsonl."""
  try:
    text = gcs.read('runs/tiny/metrics.jsonl').decode()
  except OSError:  # not written yet
    return []
  rows = [json.loads(l) for l in text.splitlines()]
  return [(r['step'], r['train/loss']) for r in rows if 'valid/loss' not in r]


# In one process: --eval_only, predict.py (with --attention) and
# visualize.py on the work directory on the bucket.
SERVE = """
import sys
from experiments import predict, visualize
from mesm_jax.train import main

run, out, video, audio, clip_id, text, start, end = sys.argv[1:]
assert main.run(['--workdir', run, '--eval_only']) == 0
assert predict.main([f'--workdir={run}', f'--text={text}', f'--audio={audio}',
                     f'--start={start}', f'--end={end}',
                     f'--out={out}/predict.json', f'--attention={out}',
                     video]) == 0
assert visualize.main([f'--workdir={run}', '--split=test',
                       f'--clip_ids={clip_id}', f'--out_dir={out}']) == 0
"""


def _kill_after_first_checkpoint(gcs, env):
  """Starts the tiny run on the bucket (it builds the data there too) and
  SIGKILLs it once its first checkpoint (step 2) is complete and step 3 is
  logged; returns what the bucket held then."""
  proc = subprocess.Popen(
      [sys.executable, str(ROOT / 'experiments' / 'run.py'), *TINY,
       '--workdir', RUN], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + TIMEOUT
  try:
    while not (_committed_steps(gcs) and len(_train_losses(gcs)) >= 3):
      assert proc.poll() is None, 'the run ended before it was killed'
      assert time.time() < deadline
      time.sleep(0.05)
  finally:  # the run and its preprocessing workers
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  return {'checkpoints': _committed_steps(gcs), 'losses': _train_losses(gcs),
          'objects': gcs.objects('runs/tiny/')}


def _serve(gcs, env, raw):
  """SERVE on a test clip of the synthetic raw data; (clip id, video)."""
  truth = json.loads((raw / 'ground_truth.json').read_text())
  clip_id, clip = next((k, c) for k, c in truth.items()
                       if c['split'] == 'test')
  video = next(raw.rglob(f'{clip["video"]}.mp4'))
  audio = next(raw.rglob(f'{clip["video"]}.wav'))
  proc = subprocess.run(
      [sys.executable, '-c', SERVE, RUN, f'{BUCKET}/served', str(video),
       str(audio), clip_id, clip['text'], str(clip['start']),
       str(clip['end'])],
      env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return clip_id, video


def test_run_on_the_bucket_killed_resumed_evaluated_and_served(gcs, tmp_path):
  """One test (its run is shared by nothing else): the tiny run with its
  work and data directories on the bucket, SIGKILLed and rerun; then
  --eval_only, predict.py and visualize.py on its work directory."""
  env = _env(tmp_path, gcs)
  times, start = {}, time.time()
  killed = _kill_after_first_checkpoint(gcs, env)
  times['killed'] = time.time() - start
  resumed = _run(env, *TINY, '--workdir', RUN)
  times['resumed'] = time.time() - start
  assert 'runs/tiny/results.json' not in killed['objects']
  assert killed['checkpoints'] == [2]
  assert 'resuming from gs://bkt/runs/tiny/checkpoints/latest at step 2' in (
      resumed)
  results = json.loads(gcs.read('runs/tiny/results.json'))
  assert results['epochs_run'] == 1 and results['config']['data_dir'] == DATA
  # metrics.jsonl holds the killed run's lines, then the resumed run's from
  # step 3 on: restored from the bucket (state and data position), step 3
  # gives the same loss again.
  losses = _train_losses(gcs)
  assert losses[:len(killed['losses'])] == killed['losses']
  again = losses[len(killed['losses']):]
  assert [s for s, _ in again] == [3, 4]
  for step, loss in killed['losses'][2:]:
    assert dict(again)[step] == loss, step
  # The config, TensorBoard and the checkpoints are on the bucket; only the
  # synthetic clips and the preprocessing cache are local.
  names = gcs.objects('runs/tiny/')
  assert 'runs/tiny/config.json' in names
  assert any(n.startswith('runs/tiny/tensorboard/events.out.tfevents')
             for n in names)
  assert _committed_steps(gcs) == [2, 4]
  assert _committed_steps(gcs, 'best') == [results['best_step']] == [4]
  assert any(n.startswith('tfds/mosei_e2e/') for n in gcs.objects('tfds/'))
  cache = tmp_path / 'cache' / 'mesm-jax' / 'gs' / 'bkt' / 'tfds'
  assert any((cache / 'downloads' / 'preprocess_cache').iterdir())
  assert not (ROOT / 'gs:').exists()

  clip_id, video = _serve(gcs, env, cache / 'synthetic_raw')
  times['served'] = time.time() - start
  print(f'times (s): {times}')
  evaluated = json.loads(gcs.read('runs/tiny/eval_results.json'))
  assert evaluated['best_step'] == results['best_step']
  for k in ('valid/f1/avg', 'test/f1/avg', 'test/mosei_wacc/avg'):
    assert evaluated['metrics'][k] == pytest.approx(results['metrics'][k],
                                                    abs=1e-6), k
  out = json.loads(gcs.read('served/predict.json'))
  assert out['checkpoint']['step'] == results['best_step']
  assert out['emotions'] == list(results['thresholds'])
  assert gcs.read(f'served/{video.stem}.png')[:4] == b'\x89PNG'
  assert gcs.read(f'served/{clip_id}.png')[:4] == b'\x89PNG'
  assert f'served/{clip_id}.npz' in gcs.objects('served/')
  # Every request through the proxy went to the emulator.
  assert not [r for r in gcs.requests() if r.endswith(' 403')]


def test_tables_read_runs_from_the_bucket(gcs):
  """Two seeds of a finished run and one unfinished, on the bucket."""
  from experiments import tables  # pylint: disable=g-import-not-at-top
  emotions = ('anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise')
  f1 = {}
  for seed in (0, 1):
    config = {'dataset': 'synthetic', 'model': 'fe2e', 'modalities': 'tav',
              'top_p': 0.5, 'seed': seed}
    values = np.random.default_rng(seed).uniform(0.3, 0.9, len(emotions))
    metrics = {f'test/{m}/{e}': float(v) for m in ('mosei_wacc', 'f1')
               for e, v in zip(emotions, values)}
    metrics.update({'test/mosei_wacc/avg': float(values.mean()),
                    'test/f1/avg': float(values.mean())})
    f1[seed] = values.mean()
    gcs.write(f'tables/fe2e-seed{seed}/config.json',
              json.dumps(config).encode())
    gcs.write(f'tables/fe2e-seed{seed}/results.json', json.dumps(
        {'config': config, 'metrics': metrics,
         'thresholds': dict.fromkeys(emotions, 0.5)}).encode())
  gcs.write('tables/fe2e-seed2/config.json', b'{}')        # still running
  written = tables.write_tables([f'{BUCKET}/tables'])
  assert str(written['synthetic_main_csv']) == (
      f'{BUCKET}/tables/tables/synthetic_main.csv')
  rows = gcs.read('tables/tables/synthetic_main.csv').decode().splitlines()
  header, row = rows[0].split(','), rows[1].split(',')
  assert row[header.index('n')] == '2'
  assert float(row[header.index('avg_f1_mean')]) == pytest.approx(
      100 * np.mean([f1[0], f1[1]]))
  assert float(row[header.index('avg_f1_std')]) == pytest.approx(
      100 * np.std([f1[0], f1[1]], ddof=1))


def test_sweep_runs_a_cell_on_the_bucket(gcs, tmp_path, monkeypatch, capsys):
  """``--workdirs gs://...``: a baseline cell trained (results.json) but
  its FLOPs left runs as a process; its record, log and flops.json land
  on the bucket, and the sweep then lists it as done."""
  from experiments import grids  # pylint: disable=g-import-not-at-top
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  grid = tmp_path / 'one.json'
  grid.write_text(json.dumps({'dataset': 'synthetic', 'seeds': [0],
                              'rows': [{'model': 'mult'}]}))
  (cell,) = grids.expand(grids.get_grid(str(grid)))
  config = sweep.check_cells([cell])[cell.name]
  gcs.write(f'sweeps/one/{cell.name}/results.json',
            json.dumps({'config': config}).encode())
  argv = ['--grid', str(grid), '--workdirs', f'{BUCKET}/sweeps']
  assert sweep.main(argv) == 0
  (record,) = [json.loads(l) for l in
               gcs.read('sweeps/one/sweep_runs.jsonl').decode().splitlines()]
  assert record['cell'] == cell.name and record['exit_code'] == 0
  assert record['state_before'] == sweep.FLOPS_ONLY
  log = gcs.read(f'sweeps/one/{cell.name}/sweep.log').decode()
  assert log.startswith('\n# ') and 'FLOPs: not applicable' in log
  flops = json.loads(gcs.read(f'sweeps/one/{cell.name}/flops.json'))
  assert 'mult' in flops['not_applicable']
  assert 'sweeps/one/sweep.json' in gcs.objects('sweeps/')
  capsys.readouterr()
  assert sweep.main(argv + ['--list']) == 0
  assert f'{cell.name:<40} done' in capsys.readouterr().out
