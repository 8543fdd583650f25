r"""Run a grid of trainings (rows x seeds), each cell in its own work directory.

    python experiments/sweep.py --grid paper_iemocap --data_dir ~/tfds \
        --raw_dir ~/IEMOCAP_full_release
    python experiments/sweep.py --grid synthetic_tiny --parallel 2
    python experiments/sweep.py --grid top_p_mosei --seeds 0,1 --set epochs=20
    python experiments/sweep.py --grid my_grid.json --axis lr=1e-4,5e-5
    python experiments/tables.py workdirs/paper_iemocap    # the tables

Cell ``<row>-seed<n>`` of grid ``G`` trains in ``<workdirs>/G/<row>-seed<n>``
with ``experiments/run.py``'s code and flags; its output goes to
``sweep.log`` there.  A cell is *done* when its ``results.json`` and
``flops.json`` (the FLOPs of ``experiments/flops.py`` for its config, on its
dataset's typical clip) exist.  Rerunning the same command skips the done
cells and resumes the others from their checkpoints, so a killed sweep
continues where it stopped.  A cell whose finished run has other settings
than the sweep asks for is reported and left alone (use another
``--workdirs``).

``--parallel N`` runs N cells at a time; on GPUs each gets its share of the
devices (``CUDA_VISIBLE_DEVICES``, from ``--devices`` or every GPU
``nvidia-smi`` lists); on CPU they share the cores.  A TPU VM's chips cannot
be split this way: run one cell at a time there, on all chips.  The data is
built once (``run.py --prepare_only``) before the cells start.

Each attempt is logged in ``<workdirs>/G/sweep_runs.jsonl`` (cell, exit code,
seconds, devices); ``sweep.json`` there records the grid and every cell's
flags.  The driver imports neither TensorFlow nor JAX (but for a ``gs://``
``--workdirs``, which it reads through TensorFlow's client): each cell is a
process of its own (``sweep.py cell``), so a crash costs one cell.

``--workdirs`` may be a ``gs://`` URL (``data_pipelines.paths``).  A cell's
output then goes to a local copy of its ``sweep.log``
(``paths.local_path``) while it runs and is added to the bucket's
``sweep.log`` when the attempt ends.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # checkout

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import os
import queue
import shlex
import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from etils import epath

from data_pipelines import paths
from experiments import grids
from mesm_jax import configs
from mesm_jax.train import flags
from mesm_jax.train import workdir as workdir_lib

RESULTS, FLOPS, LOG = 'results.json', 'flops.json', 'sweep.log'
RUNS = 'sweep_runs.jsonl'
ROOT = Path(__file__).resolve().parents[1]
# Cell states: what the next run of the sweep does with the cell.
DONE, FLOPS_ONLY, RESUME, NEW, STALE = (
    'done', 'flops only', 'resume', 'new', 'other settings')


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='Grids: ' + ', '.join(
          f'{k} ({g.doc}; {len(g.seeds)} seeds)' for k, g in
          grids.GRIDS.items()))
  ap.add_argument('--grid', required=True,
                  help=f'one of {sorted(grids.GRIDS)}, or a JSON file '
                       '(experiments/grids.py)')
  ap.add_argument('--workdirs', default='workdirs',
                  help='cells train in <workdirs>/<grid>/<cell> (a folder or '
                       'gs://)')
  ap.add_argument('--seeds', default='',
                  help="comma-separated seeds, replacing the grid's")
  ap.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                  help='a config field for every cell (repeatable), e.g. '
                       '--set epochs=20')
  ap.add_argument('--axis', action='append', default=[],
                  metavar='FIELD=V1,V2',
                  help='cross the rows with these values of a config field '
                       '(repeatable), e.g. --axis lr=1e-4,5e-5')
  ap.add_argument('--data_dir', default='',
                  help='TFDS data dir for every cell (= --set data_dir=...)')
  ap.add_argument('--raw_dir', default='',
                  help='raw release for every cell (= --set raw_dir=...)')
  ap.add_argument('--parallel', type=int, default=1,
                  help='cells run at a time (default 1)')
  ap.add_argument('--devices', default='',
                  help='GPU ids to share among the parallel cells, e.g. '
                       '0,1,2,3; default: every GPU nvidia-smi lists')
  ap.add_argument('--max_cells', type=int, default=0,
                  help='run at most this many pending cells, then stop '
                       '(0: all)')
  ap.add_argument('--no_flops', action='store_true',
                  help='do not count FLOPs (a cell is done with results.json)')
  ap.add_argument('--list', action='store_true',
                  help='list the cells and their state, run nothing')
  args = ap.parse_args(argv)
  if args.parallel < 1:
    ap.error(f'--parallel must be >= 1, got {args.parallel}')
  try:
    args.seeds = ([int(s) for s in args.seeds.split(',') if s]
                  if args.seeds else None)
    args.base = dict(_split(kv, 'set') for kv in args.set)
    args.axes = {k: v.split(',') for k, v in
                 (_split(kv, 'axis') for kv in args.axis)}
  except ValueError as e:
    ap.error(str(e))
  for key in ('data_dir', 'raw_dir'):
    if getattr(args, key):
      args.base[key] = str(paths.resolve(getattr(args, key)))
  return args


def _split(text: str, flag: str):
  key, sep, value = text.partition('=')
  if not sep or not key:
    raise ValueError(f'--{flag} expects FIELD=VALUE, got {text!r}')
  return key, value


# --------------------------------------------------------------- the cells


def cell_argv(cell: grids.Cell) -> List[str]:
  return grids.to_flags(cell.fields)


def check_cells(cells: List[grids.Cell]) -> Dict[str, Dict[str, Any]]:
  """Each cell's full config (as JSON), parsed as run.py parses its flags;
  a bad field or value stops here, naming the cell."""
  out = {}
  for cell in cells:
    try:
      config, _ = flags.parse(cell_argv(cell))
    except SystemExit:
      raise ValueError(f'cell {cell.name}: its flags are not valid '
                       f'(above): {shlex.join(cell_argv(cell))}') from None
    out[cell.name] = json.loads(json.dumps(config.to_dict()))
  return out


def _load(path: epath.Path) -> Optional[Dict[str, Any]]:
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError):
    return None


# Where and how the data is read or built, not what is trained.
LOCATION_FIELDS = ('data_dir', 'raw_dir', 'beam_options')


def differing_fields(cell: grids.Cell, config: Dict[str, Any],
                     done: Dict[str, Any]) -> List[str]:
  """The sweep's fields of ``cell`` whose finished value differs."""
  return [k for k in cell.fields if k in config and k not in LOCATION_FIELDS
          and done.get(k) != config[k]]


def cell_state(workdir: epath.Path, cell: grids.Cell, config: Dict[str, Any],
               need_flops: bool = True) -> str:
  """done | flops only | resume | new | other settings."""
  results = _load(workdir / RESULTS)
  if results is not None:
    if differing_fields(cell, config, results.get('config', {})):
      return STALE
    if need_flops and not (workdir / FLOPS).is_file():
      return FLOPS_ONLY
    return DONE
  if (workdir / workdir_lib.CONFIG_FILE).is_file():
    return RESUME
  return NEW


# --------------------------------------------------------------- devices


def detect_gpus() -> List[str]:
  """Visible GPU ids: ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi -L``."""
  visible = os.environ.get('CUDA_VISIBLE_DEVICES')
  if visible is not None:
    return [d for d in visible.split(',') if d.strip()]
  if shutil.which('nvidia-smi') is None:
    return []
  try:
    out = subprocess.run(['nvidia-smi', '-L'], capture_output=True,
                         text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(out.splitlines())
          if line.startswith('GPU ')]


def device_shares(parallel: int, devices: str) -> List[Dict[str, str]]:
  """The environment of each of ``parallel`` slots (its GPUs)."""
  ids = [d for d in devices.split(',') if d] if devices else detect_gpus()
  if not ids:
    if parallel > 1 and (Path('/dev/accel0').exists() or
                         Path('/dev/vfio').is_dir() and
                         any(Path('/dev/vfio').iterdir())):
      raise ValueError('--parallel > 1 on a TPU VM: its chips cannot be '
                       'split between processes; run one cell at a time '
                       '(--parallel 1) on all chips')
    return [{} for _ in range(parallel)]
  if len(ids) < parallel:
    raise ValueError(f'--parallel {parallel} needs at least that many GPUs; '
                     f'{len(ids)} available ({",".join(ids)})')
  return [{'CUDA_VISIBLE_DEVICES': ','.join(ids[i::parallel])}
          for i in range(parallel)]


# --------------------------------------------------------------- running


def _python() -> List[str]:
  return [sys.executable]


@contextlib.contextmanager
def _log(path: epath.Path):
  """A local file to add to the log ``path`` (e.g. a process's output).

  ``path`` itself, opened to append, when it is local; for a bucket a
  local copy (``paths.local_path``), added to ``path`` when closed.
  """
  local = paths.local_path(path)
  local.parent.mkdir(parents=True, exist_ok=True)
  remote = paths.is_remote(path)
  with open(local, 'w' if remote else 'a') as f:
    yield f
  if remote:
    paths.append_text(path, local.read_text(errors='replace'))


def prepare_data(cell: grids.Cell, log: epath.Path) -> None:
  """Build the cell's TFDS data once, before cells run side by side."""
  command = _python() + [str(ROOT / 'experiments' / 'run.py'),
                         *cell_argv(cell), '--prepare_only']
  print(f'preparing the data: {shlex.join(command[1:])}', flush=True)
  with _log(log) as f:
    rc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode
  if rc:
    raise RuntimeError(f'building the data failed (exit {rc}); see {log}:\n'
                       + _tail(log))


def _tail(path: epath.Path, lines: int = 15) -> str:
  try:
    text = paths.local_path(path).read_text(errors='replace')
    return '\n'.join(text.splitlines()[-lines:])
  except OSError:
    return ''


def _summary(workdir: epath.Path, dataset: str) -> str:
  results = _load(workdir / RESULTS) or {}
  m = results.get('metrics', {})
  first = 'acc' if dataset == 'iemocap' or 'test/mosei_wacc/avg' not in m \
      else 'mosei_wacc'
  parts = [f'test/{k}/avg {m[f"test/{k}/avg"]:.4f}' for k in (first, 'f1')
           if isinstance(m.get(f'test/{k}/avg'), float)]
  return ', '.join(parts)


class Runner:
  """Runs cells in ``parallel`` slots, logging each attempt."""

  def __init__(self, root: epath.Path, shares: List[Dict[str, str]],
               total: int, need_flops: bool):
    self.root, self.need_flops, self.total = root, need_flops, total
    self.slots = queue.Queue()
    for share in shares:
      self.slots.put(share)
    self.lock = threading.Lock()
    self.runs = paths.JsonLines(root / RUNS)
    self.started = 0

  def run(self, cell: grids.Cell, state: str) -> int:
    share = self.slots.get()
    try:
      return self._run(cell, state, share)
    finally:
      self.slots.put(share)

  def _run(self, cell, state, share) -> int:
    workdir = self.root / cell.name
    workdir.mkdir(parents=True, exist_ok=True)
    command = _python() + [str(Path(__file__).resolve()), 'cell',
                           '--workdir', str(workdir), *cell_argv(cell)]
    if not self.need_flops:
      command.append('--no_flops')
    with self.lock:
      self.started += 1
      where = (f" on GPUs {share['CUDA_VISIBLE_DEVICES']}"
               if share else '')
      print(f'[{self.started}/{self.total}] {cell.name}: {state}{where}',
            flush=True)
    start = time.time()
    with _log(workdir / LOG) as f:
      f.write(f'\n# {time.strftime("%Y-%m-%d %H:%M:%S")} '
              f'{shlex.join(command)}\n')
      f.flush()
      rc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT,
                          env={**os.environ, **share}).returncode
    seconds = time.time() - start
    record = {'cell': cell.name, 'state_before': state, 'exit_code': rc,
              'seconds': round(seconds, 1), 'devices': share or 'all',
              'host': socket.gethostname(),
              'finished': time.strftime('%Y-%m-%dT%H:%M:%S')}
    with self.lock:
      self.runs.append(record)
      took = f'{seconds / 60:.1f} min'
      if rc == 0:
        print(f'  {cell.name}: done in {took}; '
              f'{_summary(workdir, cell.fields["dataset"])}', flush=True)
      else:
        print(f'  {cell.name}: FAILED (exit {rc}) after {took}; '
              f'{workdir / LOG}:\n{_tail(workdir / LOG)}', flush=True)
    return rc


def sweep(args: argparse.Namespace) -> int:
  grid = grids.get_grid(args.grid)
  cells = grids.expand(grid, args.seeds, base=args.base, axes=args.axes)
  configs = check_cells(cells)
  root = paths.resolve(args.workdirs) / grid.name
  states = {c.name: cell_state(root / c.name, c, configs[c.name],
                               not args.no_flops) for c in cells}
  counts = {s: sum(v == s for v in states.values())
            for s in (DONE, FLOPS_ONLY, RESUME, NEW, STALE)}
  print(f'grid {grid.name} ({grid.doc or grid.dataset}): {len(cells)} cells '
        f'in {root}; ' + ', '.join(f'{n} {s}' for s, n in counts.items() if n),
        flush=True)
  if args.list:
    for c in cells:
      print(f'  {c.name:<40} {states[c.name]}')
    return 0
  for c in cells:
    if states[c.name] == STALE:
      done = _load(root / c.name / RESULTS)['config']
      fields = differing_fields(c, configs[c.name], done)
      print(f'  {c.name}: finished with other settings ('
            + ', '.join(f'{k}: {done.get(k)!r}, now {configs[c.name][k]!r}'
                        for k in fields)
            + '): left alone; use another --workdirs for the new settings')
  pending = [c for c in cells if states[c.name] not in (DONE, STALE)]
  if args.max_cells:
    pending = pending[:args.max_cells]
  root.mkdir(parents=True, exist_ok=True)
  workdir_lib.write_json_atomic(str(root / 'sweep.json'), {
      'grid': grid.name, 'dataset': grid.dataset, 'doc': grid.doc,
      'command': shlex.join([sys.executable] + sys.argv),
      'cells': {c.name: {'row': c.row, 'fields': c.fields,
                         'flags': cell_argv(c)} for c in cells}})
  failed = []
  if pending:
    shares = device_shares(min(args.parallel, len(pending)), args.devices)
    if any(states[c.name] in (NEW, RESUME) for c in pending):
      prepare_data(pending[0], root / 'prepare.log')
    runner = Runner(root, shares, len(pending), not args.no_flops)
    with concurrent.futures.ThreadPoolExecutor(len(shares)) as pool:
      codes = list(pool.map(lambda c: runner.run(c, states[c.name]), pending))
    failed = [c.name for c, rc in zip(pending, codes) if rc]
  left = len(cells) - counts[DONE] - counts[STALE] - (len(pending) -
                                                      len(failed))
  print(f'\n{len(pending) - len(failed)} cells run now, {counts[DONE]} done '
        f'before, {len(failed)} failed, {left} left; tables: python '
        f'experiments/tables.py {root}')
  if failed:
    print('failed: ' + ', '.join(failed), file=sys.stderr)
  return 1 if failed or counts[STALE] else 0


# --------------------------------------------------------------- one cell


def flops_key(config) -> str:
  """What the FLOPs depend on: the config without seed and paths.

  ``experiments/flops.py`` counts with its own fixed initialisation seed, so
  the cells of a row (its seeds) have the same FLOPs.
  """
  fields = {k: v for k, v in json.loads(json.dumps(config.to_dict())).items()
            if k not in ('seed',) + LOCATION_FIELDS}
  return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def same_flops(workdir: epath.Path, key: str) -> Optional[Dict[str, Any]]:
  """A sibling cell's ``flops.json`` counted for the same ``key``."""
  for path in sorted(workdir.parent.glob(f'*/{FLOPS}')):
    counted = _load(path)
    if counted and counted.get('config_sha1') == key:
      print(f'FLOPs as counted for {path.parent.name} (same config but the '
            'seed)', flush=True)
      return counted
  return None


def run_cell(argv: Sequence[str]) -> int:
  """``sweep.py cell --workdir D <run.py flags> [--no_flops]``: train (or
  resume) unless ``results.json`` exists, then write ``flops.json``."""
  argv = list(argv)
  need_flops = '--no_flops' not in argv
  argv = [a for a in argv if a != '--no_flops']
  config, args = flags.parse(argv)
  workdir = paths.as_path(args.workdir)
  # pylint: disable=g-import-not-at-top
  from mesm_jax.train import main as train_main
  if not (workdir / RESULTS).is_file():
    rc = train_main.execute(config, str(workdir))
    if rc:
      return rc
  if need_flops and not (workdir / FLOPS).is_file():
    key = flops_key(config)
    counted = same_flops(workdir, key)
    if config.model in configs.BASELINES:
      # experiments/flops.py counts the CNNs of FE2E / MESM; a baseline has
      # none: the cell records that and finishes.
      counted = {'not_applicable': f'{config.model} is a feature-sequence '
                 'baseline without CNNs; experiments/flops.py counts FE2E / '
                 'MESM only', 'config_sha1': key}
    elif counted is None:
      from experiments import flops
      print('counting FLOPs (experiments/flops.py) ...', flush=True)
      counted = {**flops.run_flops(config), 'config_sha1': key}
    workdir_lib.write_json_atomic(str(workdir / FLOPS), counted)
    if 'not_applicable' in counted:
      print(f"FLOPs: not applicable ({counted['not_applicable']})",
            flush=True)
      return 0
    print(f"FLOPs per {counted['clip']} clip: total {counted['total']:.3f} G, "
          f"CNNs {counted['cnn']:.3f} G executed, "
          f"{counted['cnn_effective']:.3f} G effective", flush=True)
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ['cell']:
    return run_cell(argv[1:])
  args = parse(argv)
  try:
    return sweep(args)
  except (ValueError, RuntimeError) as e:
    print(f'\nerror: {e}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  sys.exit(main())
