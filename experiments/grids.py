"""Grids of runs for ``experiments/sweep.py``: the paper's experiments, ready.

A grid is a dataset, a list of *rows* (each a dict of config fields: the
lines of a table, e.g. ``{'model': 'mesm', 'top_p': 0.7}``), the seeds every
row is trained with, and fields set for every cell (``base``).  A *cell* is
one row at one seed: one training run in its own work directory,
``<workdirs>/<grid name>/<cell name>``.

    grid = get_grid('paper_iemocap')
    for cell in expand(grid):
        cell.name, cell.fields      # 'mesm-tav-p0.7-seed0', {...}

Named grids (``GRIDS``); a JSON file with the same keys (``dataset``,
``rows``, optional ``seeds``, ``base``, ``doc``) is a grid too:

| grid | dataset | rows | seeds |
|---|---|---|---|
| paper_iemocap | iemocap | FE2E; MESM p = 0.7 (Table 3) | 5 |
| paper_mosei | mosei | FE2E; MESM p = 0.5 (Table 4) | 3 |
| ablation_iemocap | iemocap | FE2E TAV, TA, TV, VA, T, A, V; MESM (p = 0.7) TAV, TA, TV (the modality ablation) | 3 |
| top_p_mosei | mosei | FE2E; MESM p = 0.1, 0.3, 0.5, 0.7, 0.9 | 3 |
| synthetic_demo | synthetic | FE2E; MESM p = 0.5, the demo's config | 2 |
| synthetic_tiny | synthetic | FE2E; MESM p = 0.5, smoke widths, 1 epoch | 2 |
| baselines_iemocap | iemocap | LF-LSTM; LF-TRANS; EmoEmbs; MulT (Table 3's other rows; features from --set features_pickle=... or openface_dir=...) | 5 |
| baselines_mosei | mosei | LF-LSTM; LF-TRANS; EmoEmbs; MulT (Table 4's other rows; features as above) | 3 |
| baselines_synthetic | synthetic | LF-LSTM; LF-TRANS; EmoEmbs; MulT on synthetic feature sequences, 3 epochs | 2 |

Seeds: 5 for IEMOCAP's main table (its test split is small: 5 seeds give a
usable standard deviation), 3 elsewhere (MOSEI runs take longer).  The p
values of the top-p sweep are this project's choice (the paper's figure is
not tabulated); MESM.md gives p = 0.5 for MOSEI, 0.7 for IEMOCAP.

This module reads no JAX, TensorFlow or config code: listing or checking a
grid is instant.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

FE2E = {'model': 'fe2e'}
ABLATION_FE2E = ('tav', 'ta', 'tv', 'va', 't', 'a', 'v')
ABLATION_MESM = ('tav', 'ta', 'tv')   # MESM needs the text (its query)

# Smoke widths on a few synthetic clips: the whole sweep -> tables path in
# minutes on a CPU (tests/test_sweep.py, the README's example).
TINY_BASE = {
    'synthetic_clips': 24, 'epochs': 1, 'early_stop': 0,
    'cnn_features': (4, 8, 8, 16), 'cnn_fc_dim': 16, 'trans_dim': 8,
    'trans_nlayers': 1, 'trans_nheads': 2, 'trans_ff_dim': 16,
    'text_model': 'scratch', 'scratch_vocab_size': 64,
    'scratch_text_dim': 16, 'scratch_text_layers': 1,
    'scratch_text_heads': 2, 'scratch_text_ff_dim': 32, 'text_max_len': 12,
    'max_frames': 1, 'max_chunks': 1, 'batch_size': 4, 'eval_batch_size': 8,
    'face_detector': 'center', 'deterministic_input': True, 'lr': 1e-3,
}

# The baselines of Tables 3 and 4 on the synthetic feature sequences
# (features_e2e, the synthetic data's labels and splits; the demo's 240
# clips, so one --data_dir serves this grid and synthetic_demo): their own
# widths, LF-TRANS with one layer, short caps, 3 epochs at one batch and
# learning rate for all four (a demo, not the recipes); minutes on a CPU.
BASELINES = ('lf_lstm', 'lf_trans', 'emoembs', 'mult')
BASELINES_BASE = {
    'synthetic_clips': 240, 'epochs': 3, 'early_stop': 0, 'trans_nlayers': 1,
    'trans_ff_dim': 64, 'max_text_feats': 16, 'max_audio_feats': 15,
    'max_vision_feats': 24, 'batch_size': 8, 'eval_batch_size': 16,
    'deterministic_input': True, 'lr': 1e-3,
}
# The baselines on real data run with their authors' recipes, which
# ``--model`` selects (mesm_jax/configs/default.py RECIPES and, per dataset,
# DATASET_RECIPES; docs/training.md lists every value and its source):
#   LF-LSTM, LF-TRANS  lr 5e-4, 60 epochs, batch 32, early stop 8, clip 2,
#                      no scheduler; LF-TRANS 2 layers (MESM README, cli.py)
#   EmoEmbs  lr 1e-3, 100 epochs, batch 64, clip 1.0, early stop 8,
#            ReduceLROnPlateau(0.1, patience 5); sequences of 20 (MOSEI) /
#            50 (IEMOCAP) (MTER README, main.py)
#   MulT     lr 1e-3, 40 epochs, batch 24, clip 0.8, no early stop,
#            ReduceLROnPlateau(0.1, patience 20) (MulT main.py, train.py);
#            architecture of MTER's MULT_PARAMS (IEMOCAP: 10 heads, 4
#            layers, ...; MOSEI: mosei_senti's 8 heads, 4 layers, ...)
# The grid sets none of them (a value here would override the recipe).
BASELINES_PAPER_BASE = {}


@dataclasses.dataclass(frozen=True)
class Grid:
  """Rows x seeds on one dataset; ``base`` is set in every cell."""
  name: str
  dataset: str
  rows: Tuple[Dict[str, Any], ...]
  seeds: Tuple[int, ...] = (0, 1, 2)
  base: Dict[str, Any] = dataclasses.field(default_factory=dict)
  doc: str = ''


@dataclasses.dataclass(frozen=True)
class Cell:
  """One training run of a grid: its work directory name and config fields."""
  name: str
  row: str              # the row's name (the cell's name without the seed)
  fields: Dict[str, Any]


GRIDS = {
    'paper_iemocap': Grid(
        'paper_iemocap', 'iemocap',
        rows=(FE2E, {'model': 'mesm', 'top_p': 0.7}), seeds=tuple(range(5)),
        doc='Table 3: FE2E and MESM (p = 0.7) on IEMOCAP'),
    'paper_mosei': Grid(
        'paper_mosei', 'mosei',
        rows=(FE2E, {'model': 'mesm', 'top_p': 0.5}),
        doc='Table 4: FE2E and MESM (p = 0.5) on CMU-MOSEI'),
    'ablation_iemocap': Grid(
        'ablation_iemocap', 'iemocap',
        rows=tuple({'model': 'fe2e', 'modalities': m} for m in ABLATION_FE2E)
        + tuple({'model': 'mesm', 'top_p': 0.7, 'modalities': m}
                for m in ABLATION_MESM),
        doc='the modality ablation on IEMOCAP'),
    'top_p_mosei': Grid(
        'top_p_mosei', 'mosei',
        rows=(FE2E,) + tuple({'model': 'mesm', 'top_p': p}
                             for p in (0.1, 0.3, 0.5, 0.7, 0.9)),
        doc='MESM at p = 0.1 .. 0.9 against FE2E on CMU-MOSEI'),
    'synthetic_demo': Grid(
        'synthetic_demo', 'synthetic',
        rows=(FE2E, {'model': 'mesm', 'top_p': 0.5}), seeds=(0, 1),
        doc='FE2E and MESM on the synthetic demo (its config: 8 epochs)'),
    'synthetic_tiny': Grid(
        'synthetic_tiny', 'synthetic',
        rows=(FE2E, {'model': 'mesm', 'top_p': 0.5}), seeds=(0, 1),
        base=TINY_BASE,
        doc='FE2E and MESM, smoke widths, 1 epoch on 24 synthetic clips'),
    'baselines_iemocap': Grid(
        'baselines_iemocap', 'iemocap',
        rows=tuple({'model': m} for m in BASELINES), seeds=tuple(range(5)),
        base=BASELINES_PAPER_BASE,
        doc='Table 3 baseline rows: LF-LSTM, LF-TRANS, EmoEmbs, MulT on '
        'IEMOCAP; give their features with --set features_pickle=FILE or '
        'openface_dir=DIR (and --set glove_path=FILE)'),
    'baselines_mosei': Grid(
        'baselines_mosei', 'mosei',
        rows=tuple({'model': m} for m in BASELINES),
        base=BASELINES_PAPER_BASE,
        doc='Table 4 baseline rows: LF-LSTM, LF-TRANS, EmoEmbs, MulT on '
        'CMU-MOSEI; give their features with --set features_pickle=FILE or '
        'openface_dir=DIR (and --set glove_path=FILE)'),
    'baselines_synthetic': Grid(
        'baselines_synthetic', 'synthetic',
        rows=tuple({'model': m} for m in BASELINES), seeds=(0, 1),
        base=BASELINES_BASE,
        doc='LF-LSTM, LF-TRANS, EmoEmbs, MulT on synthetic feature '
        'sequences, 3 epochs on the demo\'s 240 clips'),
}

GRID_KEYS = ('dataset', 'rows', 'seeds', 'base', 'doc')


def get_grid(name_or_path: str) -> Grid:
  """A named grid (``GRIDS``) or one read from a JSON file."""
  if name_or_path in GRIDS:
    return GRIDS[name_or_path]
  path = Path(name_or_path)
  if not path.is_file():
    raise ValueError(f'unknown grid {name_or_path!r}: neither one of '
                     f'{sorted(GRIDS)} nor a JSON file')
  try:
    spec = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'grid file {path}: not valid JSON ({e})') from None
  unknown = set(spec) - set(GRID_KEYS)
  missing = {'dataset', 'rows'} - set(spec)
  if unknown or missing or not isinstance(spec.get('rows'), list):
    raise ValueError(
        f'grid file {path}: needs "dataset" and a list "rows" (optional '
        f'"seeds", "base", "doc"); missing {sorted(missing)}, unknown '
        f'{sorted(unknown)}')
  return Grid(path.stem, spec['dataset'], tuple(spec['rows']),
              tuple(spec.get('seeds', (0, 1, 2))), dict(spec.get('base', {})),
              spec.get('doc', ''))


def _text(value: Any) -> str:
  if isinstance(value, float):
    return f'{value:g}'
  if isinstance(value, (tuple, list)):
    return ','.join(_text(v) for v in value)
  return str(value)


def row_name(row: Dict[str, Any]) -> str:
  """``mesm-tav-p0.7`` (+ ``-<field><value>`` for any other field)."""
  model = row.get('model', 'mesm')
  parts = [model, row.get('modalities', 'tav')]
  if model == 'mesm':
    parts.append(f"p{_text(row.get('top_p', 0.5))}")
  for key in sorted(set(row) - {'model', 'modalities', 'top_p'}):
    parts.append(f'{key}{_text(row[key])}')
  return '-'.join(parts).replace('/', '_').replace(' ', '')


def expand(grid: Grid, seeds: Optional[Sequence[int]] = None,
           base: Optional[Dict[str, Any]] = None,
           axes: Optional[Dict[str, List[Any]]] = None) -> List[Cell]:
  """The cells of ``grid``: every row (crossed with ``axes``) at every seed.

  Seeds vary slowest: running the cells in order gives every row one seed
  first (a killed sweep has the widest table so far).

  Args:
    grid: the grid.
    seeds: replaces the grid's seeds.
    base: more fields for every cell (win over the grid's ``base``).
    axes: ``{field: [values]}`` crossed with the rows (``--axis lr=1e-4,5e-5``).
  """
  rows = [dict(r) for r in grid.rows]
  for key, values in (axes or {}).items():
    rows = [{**r, key: v} for r in rows for v in values]
  names = [row_name(r) for r in rows]
  if len(set(names)) != len(names):
    raise ValueError(f'grid {grid.name}: rows with the same name {names}')
  cells = []
  for seed in (grid.seeds if seeds is None else seeds):
    for row, name in zip(rows, names):
      fields = {'dataset': grid.dataset, **grid.base, **(base or {}), **row,
                'seed': int(seed)}
      cells.append(Cell(f'{name}-seed{seed}', name, fields))
  return cells


def to_flags(fields: Dict[str, Any]) -> List[str]:
  """Config fields as ``experiments/run.py`` flags (dataset and model first)."""
  order = ['dataset', 'model'] + sorted(set(fields) - {'dataset', 'model'})
  argv = []
  for key in order:
    if key in fields:
      value = fields[key]
      if isinstance(value, bool):
        value = 'true' if value else 'false'
      argv += [f'--{key}', _text(value)]
  return argv
