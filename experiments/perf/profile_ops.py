r"""Where the time of a compiled step goes: per op kind and per model part.

    python experiments/perf/profile_ops.py                       # FE2E vs MESM p=0.5
    python experiments/perf/profile_ops.py --frames 48 --chunks 61 --variants fe2e,gathered

Profiles the feature-extraction case of ``experiments/perf/benchmark.py`` (visual
+ audio CNNs, forward + backward) with ``jax.profiler`` and sums the device
time of every compiled op (XLA:CPU thunk, GPU kernel) over a few calls.  Each
op is named after the HLO instruction it runs; the compiled HLO text maps that
name to

  * a kind: convolution, matmul, gather, scatter, sort, reduce-window,
    reduction, elementwise/copy (from the ops inside the fusion);
  * a part of the model: stem, block1-2, attn3-5, stage3-5, fc (from the
    ``op_name`` metadata, the Flax module path).  Ops without metadata (XLA
    adds some in the backward pass, e.g. convolution kernel gradients) are
    listed as ``(unattributed)``.

The profiler adds overhead, so the profiled total exceeds the benchmark's
median; use the shares, not the absolute numbers.  ``profile(fn, *args)`` works
for any jitted function.  Only checked on CPU: on GPU, kernels that XLA emits
are named after their HLO fusions, but library calls (cuBLAS, cuDNN) carry
vendor names and would be left out of the tables.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # checkout

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
from typing import Callable, Dict, Tuple

import jax

from experiments.perf import benchmark

PARTS = ('stem', 'block1', 'block2', 'attn3', 'stage3', 'attn4', 'stage4',
         'attn5', 'stage5', 'fc1', 'fc2')
# Coarse groups: dense in both models / sparse in MESM / the head.
GROUPS = {'stem': 'front (stem, blocks 1-2)', 'block1': 'front (stem, blocks 1-2)',
          'block2': 'front (stem, blocks 1-2)', 'fc1': 'head (fc1, fc2)',
          'fc2': 'head (fc1, fc2)'}
SPARSE_GROUP = 'stages 3-5 (+ attention)'

# Opcode inside a fusion -> kind; the first match in this order wins.
KINDS = (('convolution', 'convolution'), ('dot', 'matmul'),
         ('scatter', 'scatter'), ('gather', 'gather'), ('sort', 'sort'),
         ('reduce-window', 'reduce-window'), ('select-and-scatter',
                                              'reduce-window'),
         ('reduce', 'reduction'))

_INSTR = re.compile(r'\s*(?:ROOT )?%(\S+) = (?:\([^)]*\)|\S+) ([\w\-]+)\(')
_OPERAND = re.compile(r'%([\w.\-]+)')
_CALLS = re.compile(r'calls=%([\w.\-]+)')
_OPNAME = re.compile(r'op_name="([^"]*)"')


def hlo_index(hlo: str) -> Dict[str, Tuple[str, str]]:
  """Instruction name -> (kind, op_name) for every instruction of the HLO.

  An instruction without a layer in its ``op_name`` (XLA creates some, e.g.
  the fused transposes and kernel gradients of convolutions) borrows the
  op_name of the nearest operand that has one (last operand first, up to
  three levels up): a heuristic, good to a layer or so.
  """
  bodies, current = collections.defaultdict(list), None
  for line in hlo.splitlines():
    head = re.match(r'%?([\w.\-]+) .*\{$', line)
    if head and not line.startswith(' '):
      current = head.group(1)
    elif current and line.startswith('  '):
      m = _INSTR.match(line)
      if m:
        bodies[current].append(m.group(2))
  index, operands = {}, {}
  for line in hlo.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    name, opcode = m.groups()
    args = line[m.end():].split(')', 1)[0]
    operands[name] = _OPERAND.findall(args)
    ops = [opcode]
    called = _CALLS.search(line)
    if called:
      ops += bodies.get(called.group(1), [])
    kind = next((k for op_, k in KINDS if any(o == op_ for o in ops)),
                'elementwise/copy')
    if any('ynn' in o or 'custom-call' == o for o in ops) and kind == (
        'elementwise/copy'):
      kind = 'library call'
    op_name = _OPNAME.search(line)
    index[name] = (kind, op_name.group(1) if op_name else '')

  def borrowed(name, depth):
    # The last operand first: a convolution's kernel gradient reads
    # (input, output gradient), and the output gradient names its layer.
    for arg in reversed(operands.get(name, [])):
      if arg in index and _PART.search(index[arg][1]):
        return index[arg][1]
    if depth > 1:
      for arg in reversed(operands.get(name, [])):
        found = borrowed(arg, depth - 1)
        if found:
          return found
    return ''

  return {name: (kind, op_name if _PART.search(op_name)
                 else borrowed(name, 3) or op_name)
          for name, (kind, op_name) in index.items()}


_PART = re.compile(r'(?<![A-Za-z_])(' + '|'.join(PARTS) + r')(?![0-9])')


def part_of(op_name: str) -> str:
  """The model part named in an op's Flax module path (or parameter name)."""
  branch = ('visual ' if 'visual_cnn' in op_name else
            'audio ' if 'audio_cnn' in op_name else '')
  parts = _PART.findall(op_name)
  return branch + parts[-1] if parts else '(unattributed)'


def group_of(part: str) -> str:
  name = part.split()[-1]
  if name in GROUPS:
    return GROUPS[name]
  return SPARSE_GROUP if name in PARTS else part


def profile(fn: Callable, *args, calls: int = 3) -> Dict[str, Dict[str, float]]:
  """Seconds per call of ``jax.jit(fn)(*args)`` by op kind, by model part
  and by group of parts (``kind``, ``part``, ``group``)."""
  jitted = jax.jit(fn)
  index = hlo_index(jitted.lower(*args).compile().as_text())
  for _ in range(2):
    jax.block_until_ready(jitted(*args))
  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp, create_perfetto_trace=True)
    for _ in range(calls):
      jax.block_until_ready(jitted(*args))
    jax.profiler.stop_trace()
    (path,) = glob.glob(f'{tmp}/**/*.trace.json.gz', recursive=True)
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  kinds, parts, groups = (collections.Counter() for _ in range(3))
  for e in events:
    if e.get('ph') != 'X' or e.get('name') not in index:
      continue
    kind, op_name = index[e['name']]
    seconds = e['dur'] * 1e-6 / calls
    kinds[kind] += seconds
    parts[part_of(op_name)] += seconds
    groups[group_of(part_of(op_name))] += seconds
  return {'kind': dict(kinds), 'part': dict(parts), 'group': dict(groups)}


def table(title: str, results: Dict[str, Dict[str, float]]) -> str:
  names = sorted({k for r in results.values() for k in r},
                 key=lambda k: -max(r.get(k, 0.0) for r in results.values()))
  cols = list(results)
  lines = [f'\n### {title}\n', '| | ' + ' | '.join(
      f'{c} ms | share' for c in cols) + ' |',
           '|---|' + '---|---|' * len(cols)]
  totals = {c: sum(results[c].values()) for c in cols}
  names = [n for n in names
           if max(r.get(n, 0.0) for r in results.values()) >= 5e-5]
  for n in names + ['total']:
    cells = []
    for c in cols:
      v = totals[c] if n == 'total' else results[c].get(n, 0.0)
      cells.append(f'{v * 1e3:.1f} | {v / totals[c]:.2f}')
    lines.append(f'| {n} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  benchmark.add_fe_case_args(ap)
  ap.add_argument('--calls', type=int, default=3)
  args = ap.parse_args(argv)
  memory_setting, captures = benchmark.fe_captures(args)
  by_kind, by_part, by_group = {}, {}, {}
  for label, cap in captures:
    res = profile(cap.fn, *jax.device_put(cap.args), calls=args.calls)
    by_kind[label], by_part[label] = res['kind'], res['part']
    by_group[label] = res['group']
  print(f'# Profile: {benchmark.describe_machine()}')
  print(f'visual + audio CNNs, forward + backward, {args.frames} frames / '
        f'{args.chunks} chunks, {args.calls} calls; host memory: '
        f'{memory_setting}')
  print(table('Device time by group of layers', by_group))
  print(table('Device time by op kind', by_kind))
  print(table('Device time by model part', by_part))


if __name__ == '__main__':
  main()
