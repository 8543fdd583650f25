r"""FE2E and MESM train steps at the paper's shapes, timed on any accelerator.

    python experiments/perf/accelerator_bench.py                 # MOSEI + IEMOCAP
    python experiments/perf/accelerator_bench.py --datasets mosei --repeats 50
    python experiments/perf/accelerator_bench.py --batch 8       # every variant at 8
    python experiments/perf/accelerator_bench.py --widths smoke --repeats 2   # a check

Made for a machine that has only JAX (with its accelerator plugin), flax,
optax, chex, numpy and ml_collections: no TensorFlow, no data, no
pretrained weights (where ml_collections is missing, carry its wheel:
``pip download --no-deps ml_collections`` here, ``pip install`` there).  For each dataset (the paper's config: batch 8 for FE2E
and 2 for MESM, p = 0.5 on MOSEI, 0.7 on IEMOCAP, ALBERT-base-sized text
encoder with random weights) and each variant (FE2E; MESM ``gathered`` and
``masked``), it runs the training loop's own train step (``parallel``'s
runner over the visible devices, as ``experiments/run.py`` would) on a
random batch whose clips have the shape of the dataset's typical clip's
length bucket, and prints:

* compile seconds, then the median step time of ``--repeats`` steps after
  ``--warmup`` (wall clock, the step's outputs fetched each step), and clips
  per second;
* the device's peak memory (``memory_stats()['peak_bytes_in_use']``, where
  the backend reports it).

Each variant runs in a process of its own, so that each peak is its own.
``--json`` writes every figure.  docs/benchmarks.md records the results
with the device's name.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # checkout

import argparse
import json
import os
import subprocess
import time
from typing import Dict, List, Optional

import numpy as np

# Clips of the dataset's typical length (compute.CLIPS: MOSEI 48 frames and
# 61 chunks, IEMOCAP 9 and 11) land in these length buckets of the paper's
# caps (input_pipeline.bucket_shapes: MOSEI 64 x 80 -> 16x20, 32x40, 64x80;
# IEMOCAP 48 x 64 -> 12x16, 24x32, 48x64; tests/test_tpu.py checks).
BUCKETS = {'mosei': (64, 80), 'iemocap': (12, 16)}
PAPER_TOP_P = {'mosei': 0.5, 'iemocap': 0.7}
VARIANTS = (('fe2e', 'masked'), ('mesm', 'gathered'), ('mesm', 'masked'))


def config_for(dataset: str, model: str, impl: str, widths: str,
               batch: int = 0):
  """The paper's config of ``dataset`` and ``model`` (smoke: tiny widths;
  ``batch`` > 0 replaces the paper's batch)."""
  import mesm_jax  # pylint: disable=g-import-not-at-top
  config = mesm_jax.get_config(dataset, model)
  config.batch_size = batch or config.batch_size
  if widths == 'smoke':
    smoke = mesm_jax.get_config('smoke', model)
    for key in ('cnn_features', 'cnn_fc_dim', 'trans_dim', 'trans_nlayers',
                'trans_nheads', 'trans_ff_dim', 'text_model',
                'scratch_vocab_size', 'scratch_text_dim',
                'scratch_text_layers', 'scratch_text_heads',
                'scratch_text_ff_dim', 'text_max_len'):
      config[key] = smoke[key]
  config.sparse_impl = impl
  return config


def run_variant(dataset: str, model: str, impl: str, widths: str,
                repeats: int, warmup: int, batch: int = 0,
                frames: Optional[int] = None,
                chunks: Optional[int] = None) -> Dict[str, object]:
  """Compile and time one train step in this process."""
  # pylint: disable=g-import-not-at-top
  import jax
  from experiments.perf import compute
  from mesm_jax import models
  from mesm_jax.train import parallel, step as step_lib
  config = config_for(dataset, model, impl, widths, batch)
  frames, chunks = (frames, chunks) if frames else BUCKETS[dataset]
  devices, _, note = parallel.fit_batches(jax.devices(), config.batch_size,
                                          config.eval_batch_size)
  encoder = compute.albert_base_encoder() if widths == 'paper' else None
  model_ = models.build_model(config, text_encoder=encoder,
                              axis_name=step_lib.AXIS,
                              platform=devices[0].platform)
  batch = compute.make_batch(config, config.batch_size, frames, chunks)
  variables = jax.jit(lambda b: model_.init(
      jax.random.key(0), jax.tree.map(lambda x: x[:1], b), train=False))(
          step_lib.model_inputs(batch))
  state = jax.device_get(step_lib.create_state(
      config, model_, variables['params'], variables.get('batch_stats', {}),
      jax.random.PRNGKey(1)))
  runner = parallel.make_runner(config.parallel, devices)
  pos_weight = np.ones((config.num_emotions,), np.float32)
  state = runner.put_state(state)
  start = time.perf_counter()
  state, metrics = runner.train_step(state, batch, pos_weight)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = runner.train_step(state, batch, pos_weight)
    jax.block_until_ready(metrics)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, metrics = runner.train_step(state, batch, pos_weight)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  step_s = float(np.median(times))
  stats = {}
  try:
    stats = devices[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    pass
  return {'dataset': dataset, 'model': model, 'impl': impl,
          'top_p': float(config.top_p), 'widths': widths,
          'batch': int(config.batch_size), 'devices': len(devices),
          'device_kind': devices[0].device_kind,
          'platform': devices[0].platform, 'frames': frames,
          'chunks': chunks, 'note': note, 'compile_s': compile_s,
          'step_s': step_s, 'step_s_min': float(np.min(times)),
          'clips_per_s': config.batch_size / step_s,
          'loss': float(np.asarray(metrics['loss'])),
          'peak_bytes_in_use': stats.get('peak_bytes_in_use'),
          'jax': jax.__version__}


def _variant_in_subprocess(args, dataset, model, impl) -> Dict[str, object]:
  command = [sys.executable, os.path.abspath(__file__), '--one',
             f'{dataset},{model},{impl}', '--widths', args.widths,
             '--repeats', str(args.repeats), '--warmup', str(args.warmup),
             '--batch', str(args.batch)]
  out = subprocess.run(command, capture_output=True, text=True, check=False)
  if out.returncode:
    return {'dataset': dataset, 'model': model, 'impl': impl,
            'error': (out.stderr.strip().splitlines() or ['?'])[-1]}
  return json.loads(out.stdout.strip().splitlines()[-1])


def format_row(r: Dict[str, object], fe2e: Optional[Dict]) -> str:
  name = r['model'].upper() + (f' p={r["top_p"]:g} {r["impl"]}'
                               if r['model'] == 'mesm' else '')
  if 'error' in r:
    return f'| {r["dataset"]} | {name} | error: {r["error"]} |'
  peak = r['peak_bytes_in_use']
  ratio = (f'{r["step_s"] / fe2e["step_s"] * fe2e["batch"] / r["batch"]:.3f}'
           if fe2e and 'step_s' in fe2e else '-')
  return (f'| {r["dataset"]} | {name} | {r["batch"]} x {r["frames"]}f/'
          f'{r["chunks"]}c on {r["devices"]} | {r["compile_s"]:.1f} | '
          f'{r["step_s"] * 1e3:.2f} | {r["clips_per_s"]:.1f} | {ratio} | '
          f'{"-" if peak is None else f"{peak / 2**30:.2f}"} |')


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--datasets', default='mosei,iemocap')
  ap.add_argument('--widths', default='paper', choices=('paper', 'smoke'))
  ap.add_argument('--repeats', type=int, default=20)
  ap.add_argument('--warmup', type=int, default=3)
  ap.add_argument('--batch', type=int, default=0,
                  help="every variant's global batch; 0: the paper's (FE2E 8, "
                       'MESM 2)')
  ap.add_argument('--variants', default='fe2e/masked,mesm/gathered,mesm/masked')
  ap.add_argument('--json', default='')
  ap.add_argument('--one', default='', help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args.one:  # a single variant, in this process (the parent's child)
    dataset, model, impl = args.one.split(',')
    print(json.dumps(run_variant(dataset, model, impl, args.widths,
                                 args.repeats, args.warmup, args.batch)))
    return []
  import jax  # pylint: disable=g-import-not-at-top
  print(f'# train step, {args.widths} widths, on {jax.devices()[0].device_kind}'
        f' ({jax.device_count()} device(s), JAX {jax.__version__}); median '
        f'of {args.repeats} steps after {args.warmup}; time/clip ratio to FE2E')
  print('| dataset | model | batch x clip on devices | compile s | step ms '
        '| clips/s | per clip / FE2E | peak GiB |')
  print('|---|---|---|---|---|---|---|---|')
  rows = []
  variants = [tuple(v.split('/')) for v in args.variants.split(',')]
  for dataset in args.datasets.split(','):
    fe2e = None
    for model, impl in variants:
      row = _variant_in_subprocess(args, dataset, model, impl)
      fe2e = row if model == 'fe2e' else fe2e
      print(format_row(row, fe2e), flush=True)
      rows.append(row)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=1)
  return rows


if __name__ == '__main__':
  main(sys.argv[1:])
