r"""Plan a run on a Cloud TPU slice, from any machine: compile, HBM, batch, cost.

    python experiments/plan.py --dataset mosei --top_p 0.5 --tpu v5e-8
    python experiments/plan.py --dataset iemocap --model fe2e --tpu v4-8,v5e-8
    python experiments/plan.py --dataset mosei --model fe2e --tpu v5e-16  # 4 hosts

Every flag of ``experiments/run.py`` is accepted and builds the same config.
For each slice (``--tpu``) and compute dtype (``--dtypes``), the run's train
and eval steps are compiled for the slice's chips as the run would shard
them (``mesm_jax.train.aot``: the same model, state, runner and steps; every
clip at the largest length bucket; a multi-host slice as one program over
all its hosts' chips), with ``libtpu``'s compiler on this machine
(``pip install -e ".[dev]"`` brings it; no TPU needed).  Per chip it reports:

* whether each step compiles, or the error;
* the HBM XLA planned (arguments, outputs, temporaries, code) against the
  chip's;
* the largest per-chip batch whose train step fits (``--batch_search``):
  two compiles give a line through the memory, a third confirms the batch
  it predicts (more when the line misses);
* XLA's FLOPs and bytes per step, and beside them the FLOPs of the same clip
  counted by ``experiments/flops.py`` (forward pass, XLA:CPU) (``--flops``);
* step-time *estimates*, never measurements: FLOPs / peak from the chip's
  published bf16 peak (a lower bound: the program executes at least these
  FLOPs, float32 matmuls no faster than bf16 ones); XLA's bytes accessed /
  HBM bandwidth (a lower bound only as far as XLA's byte count is the real
  traffic: it charges each fused op its whole operands, which overstates
  gathers of a few rows, so for MESM's gathered stages it is an upper-side
  figure); the roofline max of the two; and the TPU cost model's own
  figure where it gives a positive one.

Whether bfloat16 keeps the paper's numbers is a separate question: this
compiles it, it does not train it.  A text checkpoint that is not on this
machine (e.g. ``albert-base-v2`` never downloaded) is replaced by a random
encoder of the same shape where its shape is known (``SAME_SHAPE``).
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # checkout

import argparse
import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

# Before libtpu loads: no GCE metadata queries (this is not a TPU VM), and
# no lock file: several planners (or a planner beside the tests) may run.
os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from mesm_jax.train import flags
# pylint: enable=g-import-not-at-top

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Chip:
  """A TPU chip's published figures (Cloud TPU documentation)."""
  name: str
  hbm_bytes: int
  bf16_flops: float      # peak FLOP/s, bf16 matmuls
  hbm_bytes_per_s: float


# docs.cloud.google.com/tpu/docs/{v4,v5e,v6e,v5p} (read 2026-12-07).
CHIPS = {
    'v4': Chip('TPU v4', 32 * GiB, 275e12, 1200e9),
    'v5e': Chip('TPU v5e', 16 * GiB, 197e12, 819e9),
    'v6e': Chip('TPU v6e', 32 * 10 ** 9, 918e12, 1638e9),
    'v5p': Chip('TPU v5p', 95 * 10 ** 9, 459e12, 2765e9),
}


@dataclasses.dataclass(frozen=True)
class Slice:
  """A Cloud TPU slice as ``jax.experimental.topologies`` describes it."""
  chip: str
  topology: str                  # get_topology_desc's name
  chips_per_host: Tuple[int, int, int]
  megacore: bool = False         # v4 / v5p: one device per chip, 2 cores

  def devices(self):
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    kwargs = {'chips_per_host_bounds': self.chips_per_host, 'num_slices': 1}
    if self.megacore:
      kwargs['chip_config_name'] = 'megacore'
    return topologies.get_topology_desc(self.topology, 'tpu',
                                        **kwargs).devices


# Cloud TPU accelerator types.  v5e / v6e hosts hold 8 chips (v5e-8 and
# v6e-8 are one VM); their multi-host slices use VMs of 4 chips; v4 / v5p
# hosts hold 4 chips.
SLICES = {
    'v4-8': Slice('v4', 'v4:2x2x1', (2, 2, 1), megacore=True),
    'v4-16': Slice('v4', 'v4:2x2x2', (2, 2, 1), megacore=True),
    'v4-32': Slice('v4', 'v4:2x2x4', (2, 2, 1), megacore=True),
    'v5p-8': Slice('v5p', 'v5:2x2x1', (2, 2, 1), megacore=True),
    'v5e-1': Slice('v5e', 'v5e:1x1', (1, 1, 1)),
    'v5e-4': Slice('v5e', 'v5e:2x2', (2, 2, 1)),
    'v5e-8': Slice('v5e', 'v5e:2x4', (2, 4, 1)),
    'v5e-16': Slice('v5e', 'v5e:4x4', (2, 2, 1)),
    'v5e-32': Slice('v5e', 'v5e:4x8', (2, 2, 1)),
    'v6e-1': Slice('v6e', 'v6e:1x1', (1, 1, 1)),
    'v6e-4': Slice('v6e', 'v6e:2x2', (2, 2, 1)),
    'v6e-8': Slice('v6e', 'v6e:2x4', (2, 4, 1)),
    'v6e-16': Slice('v6e', 'v6e:4x4', (2, 2, 1)),
}
ALIASES = {'v5litepod-' + n: 'v5e-' + n for n in ('1', '4', '8', '16', '32')}


def get_slice(name: str) -> Slice:
  name = ALIASES.get(name, name)
  if name not in SLICES:
    raise ValueError(f'unknown TPU slice {name!r}; known: '
                     f'{", ".join(SLICES)} (and v5litepod-N)')
  return SLICES[name]


# ------------------------------------------------------- estimates (no TPU)


def roofline_seconds(flops: float, bytes_accessed: float,
                     chip: Chip) -> Dict[str, float]:
  """Time estimates of one step: compute at the bf16 peak (a lower bound),
  XLA's counted bytes at the peak HBM bandwidth (a bound only where that
  count is the real traffic) and the larger of the two (``roofline``)."""
  compute_s = flops / chip.bf16_flops
  memory_s = bytes_accessed / chip.hbm_bytes_per_s
  return {'compute_s': compute_s, 'memory_s': memory_s,
          'roofline_s': max(compute_s, memory_s)}


def cost_model_seconds(cost: Dict[str, float]) -> Optional[float]:
  """XLA:TPU's ``optimal_seconds``, or None where it is not a valid time
  (seen negative for whole train steps)."""
  seconds = cost.get('optimal_seconds')
  return seconds if seconds is not None and seconds > 0 else None


def largest_batch(fits: Callable[[int], Optional[int]], b0: int, m0: int,
                  hbm: int, max_compiles: int = 4, cap: int = 4096
                  ) -> Dict[str, object]:
  """The largest per-chip batch whose step fits, by as few compiles as can.

  Args:
    fits: per-chip batch -> bytes the compiled step needs, or None when it
      does not compile for lack of memory.
    b0, m0: a batch known to compile and its bytes.
    hbm: the chip's memory.
    max_compiles: compiles allowed beyond ``b0``'s.
    cap: the largest batch tried.

  Returns:
    ``batch`` (the largest confirmed to fit), ``bytes`` (its need),
    ``exact`` (``batch + 1`` is known not to fit), ``compiles`` and
    ``predicted`` (the line's batch when no compile was left to try it,
    else None).  The line through (b0, m0) and (2 b0, m1) predicts the
    batch; a prediction that does not fit is bisected against the last
    batch that did.
  """
  lo, lo_bytes, hi, compiles = b0, m0, None, 0

  def attempt(b):
    nonlocal lo, lo_bytes, hi, compiles
    compiles += 1
    need = fits(b)
    if need is not None and need <= hbm:
      if b > lo:
        lo, lo_bytes = b, need
      return need
    hi = b if hi is None else min(hi, b)
    return None

  predicted = None
  m1 = attempt(min(2 * b0, cap))
  if m1 is not None and lo < cap:
    slope = max((m1 - m0) / max(lo - b0, 1), 1.0)
    guess = min(cap, lo + int((hbm - m1) // slope))
    if guess > lo and compiles >= max_compiles:
      predicted = guess
    elif guess > lo:
      attempt(guess)
      if hi is None and guess < cap and compiles < max_compiles:
        attempt(guess + 1)
  while hi is not None and hi - lo > 1 and compiles < max_compiles:
    attempt((lo + hi) // 2)
  return {'batch': lo, 'bytes': lo_bytes,
          'exact': hi is not None and hi == lo + 1, 'compiles': compiles,
          'predicted': predicted}


# ----------------------------------------------------------- one slice


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0][:300] if text else ""}'


def _out_of_memory(error: Exception) -> bool:
  text = str(error)
  return 'RESOURCE_EXHAUSTED' in text or 'Ran out of memory' in text


def text_encoder(config) -> Tuple[object, bool]:
  """The config's text encoder (None: the model builds it), and whether a
  random one of the same shape stands in for a checkpoint not found here."""
  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  from data_pipelines.text import CheckpointNotFoundError
  from experiments.perf import compute
  from mesm_jax import models
  if 't' not in config.modalities or config.text_model == 'scratch':
    return None, False
  try:
    return models.build_text_encoder(config), False
  except CheckpointNotFoundError:
    if config.text_model not in SAME_SHAPE or config.text_checkpoint:
      raise
  return compute.albert_base_encoder(jnp.dtype(config.dtype)), True


# Text models whose shape is known without their checkpoint.
SAME_SHAPE = ('albert-base-v2', 'albert/albert-base-v2')


def plan_one(config, slice_name: str, *, batch_search: bool = True,
             flops_check: bool = True, search_compiles: int = 3,
             log=print) -> Dict[str, object]:
  """Compile ``config``'s steps for ``slice_name`` and read what XLA says."""
  # pylint: disable=g-import-not-at-top
  from mesm_jax.train import aot
  tpu = get_slice(slice_name)
  chip = CHIPS[tpu.chip]
  devices = tpu.devices()
  hosts = len({d.process_index for d in devices})
  row = {'slice': slice_name, 'chip': chip.name, 'chips': len(devices),
         'hosts': hosts, 'dtype': config.dtype,
         'hbm_per_chip': chip.hbm_bytes, 'model': config.model,
         'dataset': config.dataset, 'top_p': config.top_p,
         'batch_size': config.batch_size,
         'eval_batch_size': config.eval_batch_size, 'notes': []}
  try:
    encoder, stand_in = text_encoder(config)
  except Exception as e:  # pylint: disable=broad-except
    row['error'] = _first_line(e)
    return row
  if stand_in:
    row['notes'].append(f'{config.text_model} is not on this machine: a '
                        'random encoder of its shape stands in (the same '
                        'program)')
  start = time.perf_counter()
  try:
    steps = aot.compile_steps(config, devices, text_encoder=encoder)
  except Exception as e:  # pylint: disable=broad-except
    row['error'] = _first_line(e)
    row['compile_s'] = time.perf_counter() - start
    return row
  row['compile_s'] = time.perf_counter() - start
  used = len(steps.devices)
  row.update(runner=steps.runner, platform=steps.devices[0].platform,
             chips_used=used,
             per_chip_batch=steps.per_device_batch,
             eval_per_chip_batch=steps.eval_batch // used,
             frames=steps.frames, chunks=steps.chunks)
  if used < len(devices):
    row['notes'].append(f'global batch {config.batch_size} uses {used} of '
                        f'{len(devices)} chips')
  for name, compiled, batch in (('train', steps.train, steps.per_device_batch),
                                ('eval', steps.eval,
                                 steps.eval_batch // used)):
    cost = aot.cost(compiled)
    row[name] = {'memory': aot.memory(compiled), 'cost': cost,
                 'flops_per_clip': cost['flops'] / batch,
                 'estimate': {**roofline_seconds(cost['flops'],
                                                 cost['bytes_accessed'], chip),
                              'cost_model_s': cost_model_seconds(cost)}}
    row[name]['fits'] = row[name]['memory'].get('total', 0) <= chip.hbm_bytes
  log(f'  {slice_name} {config.dtype}: compiled in {row["compile_s"]:.0f} s')
  if batch_search:
    row['largest_batch'] = search_batch(config, devices, encoder, row, chip,
                                        search_compiles, log)
  if flops_check:
    from experiments import flops  # pylint: disable=g-import-not-at-top
    row['flops_py_forward_per_clip'] = flops.clip_forward_flops(
        config, steps.frames, steps.chunks,
        'albert_base' if stand_in else 'config')
  return row


def search_batch(config, devices, encoder, row, chip: Chip,
                 max_compiles: int, log):
  """``largest_batch`` of the train step over every chip of the slice."""
  from mesm_jax.train import aot  # pylint: disable=g-import-not-at-top

  def fits(per_chip: int) -> Optional[int]:
    start = time.perf_counter()
    try:
      steps = aot.compile_steps(config, devices, text_encoder=encoder,
                                train_batch=per_chip * len(devices),
                                steps=('train',))
    except Exception as e:  # pylint: disable=broad-except
      if _out_of_memory(e):
        log(f'    batch {per_chip}/chip: does not fit')
        return None
      raise
    need = aot.memory(steps.train)['total']
    log(f'    batch {per_chip}/chip: {need / GiB:.2f} GiB '
        f'({time.perf_counter() - start:.0f} s)')
    return need

  if not row['train']['fits']:
    return {'batch': 0, 'bytes': None, 'exact': row['per_chip_batch'] == 1,
            'compiles': 0}
  return largest_batch(fits, row['per_chip_batch'],
                       row['train']['memory']['total'], chip.hbm_bytes,
                       max_compiles=max_compiles)


# ------------------------------------------------------------------ report


def _gib(x) -> str:
  return '-' if x is None else f'{x / GiB:.2f}'


def _ms(x) -> str:
  return '-' if x is None else f'{x * 1e3:.1f}'


def format_row(r: Dict[str, object]) -> str:
  """One slice and dtype as text, every figure per chip."""
  head = (f'{r["slice"]} ({r["chips"]} x {r["chip"]}, {r["hosts"]} host'
          f'{"s" if r["hosts"] > 1 else ""}), {r["model"].upper()}'
          f'{" p=" + format(r["top_p"], "g") if r["model"] == "mesm" else ""}'
          f' on {r["dataset"]}, {r["dtype"]}')
  lines = [head]
  lines += [f'  note: {n}' for n in r['notes']]
  if 'error' in r:
    return '\n'.join(lines + [f'  does not compile: {r["error"]}'])
  lines.append(
      f'  {r["runner"]} over {r["chips_used"]} chip(s); per chip: train '
      f'{r["per_chip_batch"]} clip(s), eval {r["eval_per_chip_batch"]}; '
      f'clips of {r["frames"]} frames, {r["chunks"]} chunks (largest bucket)')
  hbm = r['hbm_per_chip']
  for step in ('train', 'eval'):
    s = r[step]
    m, c, e = s['memory'], s['cost'], s['estimate']
    lines.append(
        f'  {step:5s} step: compiles; HBM {_gib(m["total"])} of '
        f'{_gib(hbm)} GiB ({"fits" if s["fits"] else "DOES NOT FIT"}: '
        f'arguments {_gib(m["arguments"])}, outputs {_gib(m["outputs"])} '
        f'({_gib(m["aliased"])} aliased), temporaries '
        f'{_gib(m["temporaries"])}, code {_gib(m["code"])})')
    lines.append(
        f'               {c["flops"] / 1e9:.1f} GFLOPs, '
        f'{c["bytes_accessed"] / 1e9:.2f} GB accessed per step; '
        f'{s["flops_per_clip"] / 1e9:.1f} GFLOPs per clip')
    lines.append(
        f'               estimate (not a measurement): compute >= '
        f'{_ms(e["compute_s"])} ms per step; XLA\'s bytes at HBM bandwidth '
        f'{_ms(e["memory_s"])} ms; roofline {_ms(e["roofline_s"])} ms; '
        f'cost model: {_ms(e["cost_model_s"]) if e["cost_model_s"] else "no valid figure"}'
        f'{" ms" if e["cost_model_s"] else ""}')
  big = r.get('largest_batch')
  if big is not None:
    if big.get('predicted'):
      lines.append(
          f'  largest train batch per chip: {big["predicted"]} predicted by '
          f'the memory line through the compiled batches (not compiled: '
          f'--search_compiles {big["compiles"]}); {big["batch"]} confirmed '
          f'({_gib(big["bytes"])} GiB)')
    elif big['batch']:
      lines.append(
          f'  largest train batch per chip that fits: {big["batch"]} '
          f'({_gib(big["bytes"])} GiB; '
          f'{"one more does not fit" if big["exact"] else "confirmed by a compile; one more is over the memory line"}'
          f', {big["compiles"]} more compiles)')
    else:
      lines.append('  largest train batch per chip that fits: none (the '
                   'configured batch does not fit)')
  fp = r.get('flops_py_forward_per_clip')
  if fp:
    lines.append(
        f'  FLOPs per clip: eval step (TPU) {r["eval"]["flops_per_clip"] / 1e9:.1f}'
        f' G; experiments/flops.py forward (XLA:CPU, same clip) '
        f'{fp / 1e9:.1f} G; train step (TPU) '
        f'{r["train"]["flops_per_clip"] / 1e9:.1f} G')
  return '\n'.join(lines)


def script_flags() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument('--tpu', default='v5e-8',
                      help='TPU slices, comma-separated: ' + ', '.join(SLICES))
  parser.add_argument('--dtypes', default='float32,bfloat16',
                      help='compute dtypes to plan, comma-separated '
                           '(float32, bfloat16; --dtype is ignored)')
  parser.add_argument('--batch_search', type=flags.str2bool, nargs='?',
                      const=True, default=True,
                      help='find the largest per-chip train batch that fits '
                           '(a few more compiles per slice)')
  parser.add_argument('--search_compiles', type=int, default=3,
                      help='most compiles of the batch search: 1 (the '
                           "line only; its batch reported as a prediction), "
                           '2 (the line and its prediction), 3 (+ one more '
                           'clip, to show it does not fit), more to bisect a '
                           'line that misses')
  parser.add_argument('--flops', type=flags.str2bool, nargs='?', const=True,
                      default=True,
                      help="count the clip's forward FLOPs with "
                           'experiments/flops.py too (compiles on this CPU)')
  parser.add_argument('--json', default='',
                      help='also write every figure here (a list, one entry '
                           'per slice and dtype)')
  return parser


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
  config, args = flags.parse(argv, parents=[script_flags()])
  slices = [s for s in args.tpu.split(',') if s]
  dtypes = [d for d in args.dtypes.split(',') if d]
  for s in slices:
    get_slice(s)  # a typo fails before any compile
  for d in dtypes:
    if d not in ('float32', 'bfloat16'):
      raise SystemExit(f'error: unknown dtype {d!r} (float32, bfloat16)')
  rows = []
  for s in slices:
    for d in dtypes:
      cfg = config.as_configdict() if hasattr(config, 'as_configdict') else (
          config.copy_and_resolve_references())
      cfg.dtype = d
      print(f'compiling {cfg.model} for {s} ({d}) ...', flush=True)
      row = plan_one(cfg, s, batch_search=args.batch_search,
                     flops_check=args.flops,
                     search_compiles=args.search_compiles)
      print(format_row(row) + '\n', flush=True)
      rows.append(row)
      if args.json:  # after every slice: a long plan keeps what it has
        with open(args.json, 'w') as f:
          json.dump(rows, f, indent=1)
  return rows


if __name__ == '__main__':
  main(sys.argv[1:])
