r"""Where the CPU time of the feature extraction goes, by library (Linux perf).

    python experiments/perf/cpu_profile.py                           # IEMOCAP-sized clip
    python experiments/perf/cpu_profile.py --frames 48 --chunks 61   # MOSEI-sized clip

Runs the feature-extraction case of ``experiments/perf/benchmark.py`` (visual +
audio CNNs, forward + backward) of each variant in a loop, samples the
process with ``perf record -p`` while it runs, and sorts the samples by the
symbol they hit:

  ynn matmul     YNNPACK's matmul kernels (``ynn::dot_*``): every convolution
                 and matmul XLA:CPU hands to YNNPACK;
  ynn other      the rest of YNNPACK and its slinky runtime (transposes,
                 packing, elementwise ops, reductions inside those fusions);
  xla jit        code XLA compiled itself: gathers, BatchNorm, ReLU,
                 pooling, index arithmetic, the loops of its fusions;
  eigen          ops XLA hands to Eigen (dots YNNPACK does not take, such as
                 a kernel gradient contracting the leading axis of both
                 operands);
  sort, malloc/free, memcpy/memset, kernel, other.

Unlike ``profile_ops.py``, which sums the duration of each op and so counts
an op twice when it runs beside another one, or not at all while it waits,
these are CPU samples: their shares add up to the process's CPU time.  The
tables give CPU seconds per call by group (the share of the samples times
the CPU time per call measured over the same loop) and the ratio to FE2E.

The samples also give a timeline: in slices of one sampling period, how
many of the process's threads were on a CPU, and, in the slices where only
one was, which group it ran (the "lone" rows; a core idles meanwhile).  The
mean number of busy threads matches the benchmark's "cores busy" (CPU /
wall time).

Needs Linux ``perf`` and ``/proc/sys/kernel/perf_event_paranoid`` <= 2 (a
process may sample its own threads).  Only tried on CPU.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # checkout

import argparse
import collections
import os
import re
import shutil
import subprocess
import tempfile
import time
from typing import Dict, Iterable, Tuple

import jax

from experiments.perf import benchmark

# (group, pattern on "dso symbol"); the first match wins.
GROUPS = (
    ('ynn matmul', re.compile(r'ynn::dot_')),
    ('eigen', re.compile(r'Eigen::')),
    ('sort', re.compile(r'[Ss]ort')),
    ('ynn other', re.compile(r'ynn::|slinky::')),
    ('xla jit', re.compile(r'\[JIT\]|/perf-\d+\.map')),
    ('malloc/free', re.compile(r'\b(_int_malloc|_int_free|malloc|free|'
                               r'unlink_chunk[\w.]*|malloc_consolidate|'
                               r'_int_realloc|realloc)\b')),
    ('memcpy/memset', re.compile(r'mem(move|cpy|set)')),
    ('kernel', re.compile(r'\[kernel')),
)
GROUP_NAMES = tuple(g for g, _ in GROUPS) + ('other',)

# "    34.77%  libjax_common.so      [.] ynn::dot_fp32_3x64x1_..."
_LINE = re.compile(r'^\s*([\d.]+)%\s+(.*)$')
# "18802 24147.909573:      7fe5e5b749b0 ynn::dot_fp32_... (/path/lib.so)"
_SCRIPT = re.compile(r'^\s*(\d+)\s+([\d.]+):\s+(.*)$')


def group_of(entry: str) -> str:
  for name, pattern in GROUPS:
    if pattern.search(entry):
      return name
  return 'other'


def shares(report_lines: Iterable[str]) -> Dict[str, float]:
  """Fraction of the samples per group, from ``perf report --stdio`` text."""
  totals = collections.Counter()
  for line in report_lines:
    m = _LINE.match(line)
    if m and not line.lstrip().startswith('#'):
      totals[group_of(m.group(2))] += float(m.group(1)) / 100.0
  norm = sum(totals.values()) or 1.0
  return {g: totals.get(g, 0.0) / norm for g in GROUP_NAMES}


def timeline(script_lines: Iterable[str], freq: int) -> Dict[str, float]:
  """Shares of the time with 0, 1 or 2+ threads busy, and lone groups.

  ``script_lines``: ``perf script -F tid,time,ip,sym,dso`` output.  Time is
  cut into slices of one sampling period; a thread is busy in a slice when
  it has a sample there.  Keys: ``'0'``, ``'1'``, ``'2+'`` and
  ``'lone <group>'``, all as fractions of the slices.
  """
  samples = []
  for line in script_lines:
    m = _SCRIPT.match(line)
    if m:
      samples.append((int(m.group(1)), float(m.group(2)), m.group(3)))
  if not samples:
    return {}
  start = min(t for _, t, _ in samples)
  binned = collections.defaultdict(dict)          # slice -> {thread: symbol}
  for tid, t, symbol in samples:
    binned[int((t - start) * freq + 1e-6)][tid] = symbol  # 1e-6: rounding
  n = max(binned) + 1
  out = collections.Counter()
  for threads in binned.values():
    out['1' if len(threads) == 1 else '2+'] += 1
    if len(threads) == 1:
      out['lone ' + group_of(next(iter(threads.values())))] += 1
  out['0'] = n - len(binned)
  return {k: v / n for k, v in out.items()}


def sample(fn, args, seconds: float, freq: int) -> Tuple[Dict[str, float],
                                                          float, float]:
  """Group shares (and timeline shares), wall and CPU s per call of ``fn``."""
  if shutil.which('perf') is None:
    raise SystemExit('cpu_profile.py needs Linux perf (`perf` not on PATH)')
  with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, 'perf.data')
    perf = subprocess.Popen(
        ['perf', 'record', '-q', '-F', str(freq), '-p', str(os.getpid()),
         '-o', data, '--', 'sleep', str(seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)                        # let perf attach first
    calls, wall, cpu = 0, time.perf_counter(), time.process_time()
    while perf.poll() is None:
      jax.block_until_ready(fn(*args))
      calls += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if perf.returncode != 0 or not os.path.exists(data):
      raise SystemExit(f'perf record failed ({perf.returncode}): '
                       f'{perf.stderr.read()[-500:]}')
    report = subprocess.run(
        ['perf', 'report', '-i', data, '--no-children', '--sort', 'dso,sym',
         '--stdio'], capture_output=True, text=True, check=True).stdout
    script = subprocess.run(
        ['perf', 'script', '-i', data, '-F', 'tid,time,ip,sym,dso'],
        capture_output=True, text=True, check=True).stdout
  groups = shares(report.splitlines())
  groups.update(timeline(script.splitlines(), freq))
  return groups, wall / max(calls, 1), cpu / max(calls, 1)


def table(results: Dict[str, Tuple[Dict[str, float], float, float]]) -> str:
  cols = list(results)
  base = results[cols[0]]
  lines = ['| CPU s per call | ' + ' | '.join(
      f'{c} | x {cols[0]}' for c in cols) + ' |',
           '|---|' + '---|---|' * len(cols)]
  rows = [(g, lambda r, g=g: r[0][g] * r[2]) for g in GROUP_NAMES]
  rows += [('total CPU', lambda r: r[2]), ('wall', lambda r: r[1])]
  for name, get in rows:
    cells = []
    for c in cols:
      v, b = get(results[c]), get(base)
      cells.append(f'{v:.3f} | {v / b:.2f}' if b > 0 else f'{v:.3f} | -')
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  lines += ['', '| share of the wall time | ' + ' | '.join(cols) + ' |',
            '|---|' + '---|' * len(cols)]
  keys = ['0', '1', '2+'] + [f'lone {g}' for g in GROUP_NAMES]
  labels = {'0': 'no thread busy', '1': 'one thread busy',
            '2+': 'two or more busy'}
  for k in keys:
    vals = [results[c][0].get(k, 0.0) for c in cols]
    if k.startswith('lone') and max(vals) < 0.001:
      continue
    lines.append(f'| {labels.get(k, "  " + k)} | ' +
                 ' | '.join(f'{v:.3f}' for v in vals) + ' |')
  return '\n'.join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  benchmark.add_fe_case_args(ap)
  ap.add_argument('--seconds', type=float, default=8.0,
                  help='sampling time per variant')
  ap.add_argument('--freq', type=int, default=999, help='samples per second')
  args = ap.parse_args(argv)
  memory_setting, captures = benchmark.fe_captures(args)
  results = {}
  for label, cap in captures:
    fn, fargs = jax.jit(cap.fn), jax.device_put(cap.args)
    for _ in range(2):
      jax.block_until_ready(fn(*fargs))
    results[label] = sample(fn, fargs, args.seconds, args.freq)
  print(f'# CPU profile: {benchmark.describe_machine()}')
  print(f'visual + audio CNNs, forward + backward, {args.frames} frames / '
        f'{args.chunks} chunks; perf at {args.freq} Hz for {args.seconds:g} s '
        f'per variant; host memory: {memory_setting}\n')
  print(table(results))


if __name__ == '__main__':
  main()
