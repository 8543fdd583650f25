"""Grids, the sweep and the tables (experiments/grids.py, sweep.py, tables.py).

The unit tests read no training code; one end-to-end test checks the tiny
synthetic grid (2 models, seed 0, 1 epoch) run through ``sweep.py``, killed
(SIGKILL, cells included) once the first cell is done and run again (the
``tiny_sweep`` fixture): the rerun runs only the missing cell and
``tables.py`` writes its rows (mean ± std over seeds: the unit tests).
"""

import csv
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from experiments import grids, sweep, tables

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS = ('anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise')


# ------------------------------------------------- the tiny synthetic sweep
# experiments/sweep.py on the synthetic_tiny grid (FE2E and MESM, seed 0,
# 1 epoch), killed and resumed.


def _sweep_command(tmp_path, *extra, parallel=2):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             JAX_DISABLE_MOST_OPTIMIZATIONS='1',
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  command = [sys.executable, str(ROOT / 'experiments' / 'sweep.py'),
             '--grid', 'synthetic_tiny', '--workdirs',
             str(tmp_path / 'workdirs'), '--data_dir', str(tmp_path / 'tfds'),
             '--seeds', '0', '--parallel', str(parallel), *extra]
  return command, env


def _sweep(tmp_path, *extra):
  command, env = _sweep_command(tmp_path, *extra)
  proc = subprocess.run(command, env=env, capture_output=True, text=True,
                        timeout=1200)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _kill_after(tmp_path, root, done: int, timeout=900):
  """Starts the sweep, one cell at a time; SIGKILLs it and its cells once
  ``done`` cells have finished (logged in ``sweep_runs.jsonl``); returns
  those cells."""
  command, env = _sweep_command(tmp_path, parallel=1)
  proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + timeout
  runs = root / 'sweep_runs.jsonl'
  try:
    while not (runs.is_file() and len(runs.read_text().splitlines()) >= done):
      assert proc.poll() is None, 'the sweep ended before it was killed'
      assert time.time() < deadline, 'the first cells did not finish'
      time.sleep(0.2)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  return [json.loads(l)['cell'] for l in runs.read_text().splitlines()]


@pytest.fixture(scope='module')
def tiny_sweep(tmp_path_factory):
  """Runs the tiny sweep, SIGKILLs it after 1 cell, runs it again.

  Returns what happened: ``root`` (the grid's workdirs), ``logged`` (cells
  logged before the kill), ``finished`` / ``left`` (cells with / without
  flops.json after it), ``stamps`` (results.json mtimes of the finished
  ones before the rerun), ``second`` (the rerun's output), ``listed``
  (``--list`` afterwards).
  """
  tmp_path = tmp_path_factory.mktemp('tiny_sweep')
  root = tmp_path / 'workdirs' / 'synthetic_tiny'
  cells = [c.name for c in grids.expand(grids.GRIDS['synthetic_tiny'],
                                        seeds=[0])]
  logged = _kill_after(tmp_path, root, done=1)
  finished = [c for c in cells if (root / c / 'flops.json').is_file()]
  left = [c for c in cells if c not in finished]
  stamps = {c: (root / c / 'results.json').stat().st_mtime_ns
            for c in finished}
  second = _sweep(tmp_path)
  listed = _sweep(tmp_path, '--list')
  return types.SimpleNamespace(root=root, cells=cells, logged=logged,
                               finished=finished, left=left, stamps=stamps,
                               second=second, listed=listed)


# --------------------------------------------------------------- grids


def test_paper_grids_expand_to_valid_run_flags():
  """Every cell of every shipped grid parses as run.py flags, seeds vary
  slowest, and the names say model, modalities and p."""
  for name, grid in grids.GRIDS.items():
    cells = grids.expand(grid)
    assert len(cells) == len(grid.rows) * len(grid.seeds)
    assert [c.fields['seed'] for c in cells[:len(grid.rows)]] == [
        grid.seeds[0]] * len(grid.rows)
    configs = sweep.check_cells(cells)
    for cell in cells:
      config = configs[cell.name]
      assert config['dataset'] == grid.dataset
      for key, value in cell.fields.items():
        want = list(value) if isinstance(value, tuple) else value
        assert config[key] == want, (name, cell.name, key)
  names = [c.name for c in grids.expand(grids.GRIDS['paper_iemocap'])]
  assert names[:2] == ['fe2e-tav-seed0', 'mesm-tav-p0.7-seed0']
  assert len(names) == 10 and names[-1] == 'mesm-tav-p0.7-seed4'
  ablation = grids.expand(grids.GRIDS['ablation_iemocap'], seeds=[0])
  assert [c.row for c in ablation] == [
      'fe2e-tav', 'fe2e-ta', 'fe2e-tv', 'fe2e-va', 'fe2e-t', 'fe2e-a',
      'fe2e-v', 'mesm-tav-p0.7', 'mesm-ta-p0.7', 'mesm-tv-p0.7']


def test_axes_seeds_and_json_grid(tmp_path):
  path = tmp_path / 'lr.json'
  path.write_text(json.dumps({'dataset': 'iemocap', 'rows': [
      {'model': 'fe2e'}], 'seeds': [3], 'base': {'epochs': 2}}))
  grid = grids.get_grid(str(path))
  cells = grids.expand(grid, seeds=[1, 2], base={'epochs': '5'},
                       axes={'lr': ['1e-4', '5e-5']})
  assert [c.name for c in cells] == [
      'fe2e-tav-lr1e-4-seed1', 'fe2e-tav-lr5e-5-seed1',
      'fe2e-tav-lr1e-4-seed2', 'fe2e-tav-lr5e-5-seed2']
  config = sweep.check_cells(cells)['fe2e-tav-lr5e-5-seed2']
  assert config['lr'] == 5e-5 and config['epochs'] == 5 and config['seed'] == 2
  bad = grids.expand(grid, axes={'no_such_field': ['1']})
  with pytest.raises(ValueError, match='fe2e-tav-no_such_field1-seed3'):
    sweep.check_cells(bad)
  (tmp_path / 'broken.json').write_text('{"rows": []}')
  with pytest.raises(ValueError, match='needs "dataset"'):
    grids.get_grid(str(tmp_path / 'broken.json'))
  with pytest.raises(ValueError, match='unknown grid'):
    grids.get_grid('paper_nothing')


def test_cell_state_done_resume_new_and_other_settings(tmp_path):
  cell = grids.expand(grids.GRIDS['paper_mosei'], seeds=[0])[1]
  config = sweep.check_cells([cell])[cell.name]
  workdir = tmp_path / cell.name
  assert sweep.cell_state(workdir, cell, config) == sweep.NEW
  workdir.mkdir()
  (workdir / 'config.json').write_text(json.dumps(config))
  assert sweep.cell_state(workdir, cell, config) == sweep.RESUME
  (workdir / 'results.json').write_text(json.dumps({'config': config}))
  assert sweep.cell_state(workdir, cell, config) == sweep.FLOPS_ONLY
  assert sweep.cell_state(workdir, cell, config, need_flops=False) == sweep.DONE
  (workdir / 'flops.json').write_text('{}')
  assert sweep.cell_state(workdir, cell, config) == sweep.DONE
  moved = dict(config, data_dir='/elsewhere')      # a path is not a setting
  (workdir / 'results.json').write_text(json.dumps({'config': moved}))
  assert sweep.cell_state(workdir, cell, config) == sweep.DONE
  other = dict(config, top_p=0.9)
  (workdir / 'results.json').write_text(json.dumps({'config': other}))
  assert sweep.cell_state(workdir, cell, config) == sweep.STALE


def test_device_shares_split_the_gpus():
  shares = sweep.device_shares(2, '0,1,2,3')
  assert shares == [{'CUDA_VISIBLE_DEVICES': '0,2'},
                    {'CUDA_VISIBLE_DEVICES': '1,3'}]
  with pytest.raises(ValueError, match='at least that many GPUs'):
    sweep.device_shares(3, '0,1')


# --------------------------------------------------------------- tables


def _fake_run(root, dataset, model, seed, rng, modalities='tav', top_p=0.5,
              flops=None):
  """A finished run's files with random metrics (IEMOCAP: acc, else wacc)."""
  name = f'{model}-{modalities}-p{top_p}-seed{seed}'
  workdir = root / name
  workdir.mkdir(parents=True)
  config = {'dataset': dataset, 'model': model, 'modalities': modalities,
            'top_p': top_p, 'seed': seed, 'lr': 5e-5, 'data_dir': f'/d{seed}',
            'sparse_impl': 'gathered', 'batch_size': 2 if model == 'mesm'
            else 8}
  a = 'acc' if dataset == 'iemocap' else 'mosei_wacc'
  metrics = {}
  for split in ('valid', 'test'):
    for m in (a, 'f1'):
      values = rng.uniform(0.3, 0.9, len(EMOTIONS))
      for e, v in zip(EMOTIONS, values):
        metrics[f'{split}/{m}/{e}'] = float(v)
      metrics[f'{split}/{m}/avg'] = float(values.mean())
  (workdir / 'config.json').write_text(json.dumps(config))
  (workdir / 'results.json').write_text(json.dumps({
      'config': config, 'metrics': metrics,
      'thresholds': {e: 0.5 for e in EMOTIONS}}))
  if flops is not None:
    (workdir / 'flops.json').write_text(json.dumps(flops))
  return metrics


def test_tables_mean_std_ablation_top_p_and_published(tmp_path):
  rng = np.random.default_rng(0)
  iemocap = tmp_path / 'ablation'
  got = {}
  for model, mods in (('fe2e', 'tav'), ('fe2e', 'ta'), ('mesm', 'tav')):
    for seed in range(3):
      got[(model, mods, seed)] = _fake_run(
          iemocap, 'iemocap', model, seed, rng, mods, top_p=0.7,
          flops={'cnn': 24.5, 'cnn_effective': 17.7 if model == 'mesm'
                 else 24.5, 'total': 42.0, 'clip': 'iemocap'})
  (iemocap / 'mesm-ta-p0.7-seed9').mkdir()                  # still running
  (iemocap / 'mesm-ta-p0.7-seed9' / 'config.json').write_text('{}')
  written = tables.write_tables([str(iemocap)], str(tmp_path / 'out'))
  rows = list(csv.DictReader(written['iemocap_main_csv'].open()))
  assert [r['row'] for r in rows] == ['FE2E TAV', 'FE2E TA',
                                      'MESM (p = 0.7) TAV']
  for r, (model, mods) in zip(rows, (('fe2e', 'tav'), ('fe2e', 'ta'),
                                     ('mesm', 'tav'))):
    assert r['n'] == '3' and r['seeds'] == '0 1 2'
    for key, col in (('test/acc/fear', 'fear_acc'),
                     ('test/f1/avg', 'avg_f1')):
      values = np.array([got[(model, mods, s)][key] for s in range(3)]) * 100
      np.testing.assert_allclose(float(r[f'{col}_mean']), values.mean())
      np.testing.assert_allclose(float(r[f'{col}_std']), values.std(ddof=1))
  # The paper's figures stand beside the rows they belong to.
  assert rows[0]['paper_a'] == '84.5' and rows[0]['paper_gflops'] == '8.65'
  assert rows[2]['paper_f1'] == '57.4' and rows[1]['paper_a'] == ''
  ablation = list(csv.DictReader(written['iemocap_ablation_csv'].open()))
  assert [(r['modalities'], r['paper_a'], r['paper_f1']) for r in ablation] == [
      ('tav', '84.5', '58.5'), ('ta', '83.7', '54.0'), ('tav', '84.4', '57.3')]
  md = written['iemocap_main_md'].read_text()
  mean = np.mean([got[('fe2e', 'tav', s)]['test/f1/avg'] for s in range(3)])
  std = np.std([got[('fe2e', 'tav', s)]['test/f1/avg'] for s in range(3)],
               ddof=1)
  assert f'{mean * 100:.1f} ± {std * 100:.1f}' in md
  assert 'top_p' not in ' '.join(written)            # one p only

  mosei = tmp_path / 'top_p'
  for p, eff in ((0.3, 40.0), (0.5, 69.3), (0.9, 120.0)):
    for seed in range(2):
      _fake_run(mosei, 'mosei', 'mesm', seed, rng, top_p=p,
                flops={'cnn': 91.0, 'cnn_effective': eff, 'clip': 'mosei'})
  _fake_run(mosei, 'mosei', 'fe2e', 0, rng,
            flops={'cnn': 134.2, 'cnn_effective': 134.2, 'clip': 'mosei'})
  written = tables.write_tables([str(mosei)], str(tmp_path / 'out2'))
  top = list(csv.DictReader(written['mosei_top_p_csv'].open()))
  assert [r['top_p'] for r in top] == ['', '0.3', '0.5', '0.9']
  assert [r['n'] for r in top] == ['1', '2', '2', '2']
  np.testing.assert_allclose(float(top[2]['effective_over_fe2e']),
                             69.3 / 134.2)
  main = list(csv.DictReader(written['mosei_main_csv'].open()))
  assert main[2]['paper_a'] == '66.8' and 'avg_wacc_mean' in main[2]
  assert written['mosei_top_p_png'].read_bytes()[:4] == b'\x89PNG'


def test_tables_baseline_rows_published_and_flops_not_applicable(tmp_path):
  rng = np.random.default_rng(1)
  root = tmp_path / 'baselines'
  na = {'not_applicable': 'no CNN', 'config_sha1': 'x'}
  for model in ('mult', 'lf_lstm', 'emoembs', 'lf_trans'):
    _fake_run(root, 'mosei', model, 0, rng, flops=na)
  _fake_run(root, 'mosei', 'fe2e', 0, rng,
            flops={'cnn': 134.2, 'cnn_effective': 134.2, 'clip': 'mosei'})
  written = tables.write_tables([str(root)], str(tmp_path / 'out'))
  main = list(csv.DictReader(written['mosei_main_csv'].open()))
  assert [r['row'] for r in main] == ['LF-LSTM', 'LF-TRANS', 'EmoEmbs',
                                      'MulT', 'FE2E']
  assert [(r['paper_a'], r['paper_f1']) for r in main[:4]] == [
      ('63.1', '43.3'), ('64.1', '44.4'), ('64.2', '44.2'), ('65.4', '45.2')]
  md = written['mosei_main_md'].read_text()
  assert md.count('| n/a |') == 4


def test_baseline_cell_records_flops_as_not_applicable(tmp_path):
  workdir = tmp_path / 'mult-tav-seed0'
  workdir.mkdir()
  (workdir / 'results.json').write_text(json.dumps(     # trained: FLOPs left
      {'config': {'dataset': 'synthetic', 'model': 'mult'}}))
  assert sweep.run_cell(['--workdir', str(workdir), '--dataset', 'synthetic',
                         '--model', 'mult']) == 0
  flops = json.loads((workdir / 'flops.json').read_text())
  assert 'mult' in flops['not_applicable'] and flops['config_sha1']


# --------------------------------------------------------------- end to end


@pytest.mark.slow
def test_tiny_sweep_killed_resumes_missing_cells_and_tables(tiny_sweep):
  root, logged = tiny_sweep.root, tiny_sweep.logged
  finished, left = tiny_sweep.finished, tiny_sweep.left
  assert set(logged) <= set(finished) and left, (logged, finished)
  stamps = tiny_sweep.stamps
  second = tiny_sweep.second
  assert '2 cells in' in second and f'{len(finished)} done' in second
  assert (f'{len(left)} cells run now, {len(finished)} done before, '
          '0 failed, 0 left') in second
  # The finished cells were not run again; the killed ones ran to the end.
  assert stamps == {c: (root / c / 'results.json').stat().st_mtime_ns
                    for c in finished}
  runs = [json.loads(l) for l in (root / 'sweep_runs.jsonl').read_text()
          .splitlines()]
  rerun = [r['cell'] for r in runs[len(logged):]]
  assert sorted(rerun) == sorted(left)
  assert all(r['exit_code'] == 0 for r in runs)
  # FLOPs beside every cell: MESM's effective count below FE2E's.
  flops = {c: json.loads((root / c / 'flops.json').read_text())
           for c in tiny_sweep.cells}
  assert flops['mesm-tav-p0.5-seed0']['cnn_effective'] < flops[
      'fe2e-tav-seed0']['cnn']
  assert flops['fe2e-tav-seed0']['clip'] == 'config'
  assert '2 done' in tiny_sweep.listed
  written = tables.write_tables([str(root)])
  main = list(csv.DictReader(written['synthetic_main_csv'].open()))
  assert [(r['row'], r['n'], r['seeds']) for r in main] == [
      ('FE2E', '1', '0'), ('MESM (p = 0.5)', '1', '0')]
  for r, cell in zip(main, ('fe2e-tav-seed0', 'mesm-tav-p0.5-seed0')):
    value = json.loads((root / cell / 'results.json').read_text())[
        'metrics']['test/f1/avg'] * 100
    np.testing.assert_allclose(float(r['avg_f1_mean']), value)
    assert r['avg_f1_std'] in ('', 'nan'), r      # one seed: no spread
