r"""The paper's tables from finished runs: mean ± std over seeds, FLOPs, paper.

    python experiments/tables.py workdirs/paper_iemocap
    python experiments/tables.py workdirs/paper_mosei workdirs/top_p_mosei \
        --out docs/results

Reads every ``results.json`` (and ``flops.json``) under the given
directories (a sweep's ``<workdirs>/<grid>``, or any directory of run
work directories), groups the runs into rows (the same config but the seed)
and writes, per dataset, Markdown and CSV into ``--out`` (default
``<first directory>/tables``), also printed:

* ``main``: Table 3 (IEMOCAP: Acc / F1 per emotion) or Table 4 (MOSEI and
  the synthetic data: WAcc / F1), the averages, the effective and executed
  CNN GFLOPs per typical clip, one row per model;
* ``ablation``: averages per model and modality set, when modalities vary;
* ``top_p``: averages and FLOPs against p (FE2E as the reference), when
  MESM's p varies, with ``top_p.png``.

Every figure is mean ± sample standard deviation (ddof 1) over the seeds, in
percent; ``n`` is the number of seeds.  The paper's single-run figures
(``experiments/published.csv``) stand beside the rows they correspond to,
never in place of a result.  Runs still going (no ``results.json``) are
listed and left out.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # checkout

import argparse
import csv
import io
import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from etils import epath
import numpy as np

from data_pipelines import paths

PUBLISHED = Path(__file__).with_name('published.csv')
IGNORED = ('seed', 'data_dir', 'raw_dir', 'beam_options')  # not a row's settings
SKIPPED = ('checkpoints', 'tensorboard')  # folders of a run with no config
MODEL_NAMES = {'fe2e': 'FE2E', 'mesm': 'MESM', 'lf_lstm': 'LF-LSTM',
               'lf_trans': 'LF-TRANS', 'mult': 'MulT', 'emoembs': 'EmoEmbs'}
# Row order: the baselines as in the paper's tables, then FE2E, then MESM.
MODEL_ORDER = ('lf_lstm', 'lf_trans', 'emoembs', 'mult', 'fe2e', 'mesm')
END_TO_END = ('fe2e', 'mesm')


# --------------------------------------------------------------- reading


def find_runs(dirs: Sequence[str]
              ) -> Tuple[List[Dict[str, Any]], List[epath.Path]]:
  """Finished runs (results + flops) under ``dirs``, and unfinished dirs.

  A directory is a folder or a ``gs://`` URL (``data_pipelines.paths``);
  the work directories' checkpoints and TensorBoard folders are not
  searched.
  """
  runs, unfinished = [], []
  for d in dirs:
    d = paths.as_path(d)
    if not d.is_dir():
      raise FileNotFoundError(f'{d}: no such directory')
    for config in paths.find_files(d, 'config.json', skip=SKIPPED):
      workdir = config.parent
      results = workdir / 'results.json'
      if not results.is_file():
        unfinished.append(workdir)
        continue
      try:
        run = json.loads(results.read_text())
      except json.JSONDecodeError as e:
        raise ValueError(f'{results}: not valid JSON ({e})') from None
      flops = workdir / 'flops.json'
      run['flops'] = json.loads(flops.read_text()) if flops.is_file() else {}
      run['workdir'] = str(workdir)
      runs.append(run)
  return runs, unfinished


def metric_names(run: Dict[str, Any]) -> Tuple[str, str]:
  """(metric key, column name) of the headline accuracy of ``run``."""
  if 'test/mosei_wacc/avg' in run['metrics']:
    return 'mosei_wacc', 'WAcc'
  return 'acc', 'Acc'


def row_key(config: Dict[str, Any]) -> str:
  fields = {k: v for k, v in config.items() if k not in IGNORED}
  if fields.get('model') != 'mesm':
    fields.pop('top_p', None)
    fields.pop('sparse_impl', None)
  return json.dumps(fields, sort_keys=True)


class Row:
  """The runs of one config (every seed)."""

  def __init__(self, runs: List[Dict[str, Any]]):
    self.runs = sorted(runs, key=lambda r: r['config']['seed'])
    self.config = self.runs[0]['config']
    self.model = self.config['model']
    self.modalities = self.config['modalities']
    self.top_p = float(self.config['top_p']) if self.model == 'mesm' else None
    self.flops = next((r['flops'] for r in self.runs if r['flops']), {})
    self.label = ''

  @property
  def n(self) -> int:
    return len(self.runs)

  def values(self, key: str) -> np.ndarray:
    return np.array([np.nan if r['metrics'].get(key) is None
                     else r['metrics'][key] for r in self.runs], np.float64)

  def stat(self, key: str) -> Tuple[float, float]:
    """Mean and sample std (ddof 1; NaN for one seed), in percent."""
    v = self.values(key) * 100
    v = v[~np.isnan(v)]
    if not v.size:
      return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def group(runs: List[Dict[str, Any]]) -> Dict[str, List[Row]]:
  """Rows per dataset: baselines, FE2E, then MESM by p, then modalities."""
  by_dataset: Dict[str, Dict[str, List]] = {}
  for run in runs:
    ds = run['config']['dataset']
    by_dataset.setdefault(ds, {}).setdefault(row_key(run['config']),
                                             []).append(run)
  out = {}
  order = ('tav', 'ta', 'tv', 'va', 't', 'a', 'v')
  for ds, rows in by_dataset.items():
    rows = [Row(r) for r in rows.values()]
    rows.sort(key=lambda r: (MODEL_ORDER.index(r.model)
                             if r.model in MODEL_ORDER else len(MODEL_ORDER),
                             r.model, r.top_p or 0,
                             order.index(r.modalities)
                             if r.modalities in order else 9,
                             row_key(r.config)))
    label_rows(rows)
    out[ds] = rows
  return out


def _group(model: str) -> str:
  """Rows compared for their settings: FE2E with MESM; a baseline alone."""
  return 'end_to_end' if model in END_TO_END else model


def label_rows(rows: List[Row]) -> None:
  """Names from what differs between the rows: 'MESM (p = 0.7)', '... TA'.

  A setting is named when it differs between rows of FE2E and MESM, or
  between rows of the same baseline: each baseline trains on other inputs
  with its authors' recipe (lr, epochs, clipping, scheduler, feature caps),
  which is not what tells two rows of a table apart.
  """
  configs = [{k: v for k, v in r.config.items() if k not in IGNORED}
             for r in rows]
  varying = {}
  for group in {_group(r.model) for r in rows}:
    same = [c for r, c in zip(rows, configs) if _group(r.model) == group]
    varying[group] = sorted(
        {k for c in same for k in c
         if any(c.get(k) != o.get(k) for o in same)}
        - {'model', 'top_p', 'modalities', 'batch_size', 'sparse_impl'})
  show_modalities = len({r.modalities for r in rows}) > 1
  for r, c in zip(rows, configs):
    name = MODEL_NAMES.get(r.model, r.model)
    if r.top_p is not None:
      name += f' (p = {r.top_p:g})'
    if show_modalities:
      name += f' {r.modalities.upper()}'
    extra = [f'{k}={c.get(k)}' for k in varying[_group(r.model)]]
    r.label = name + (f" [{', '.join(extra)}]" if extra else '')


# --------------------------------------------------------------- published


def read_published(path: Path = PUBLISHED) -> List[Dict[str, Any]]:
  lines = [l for l in path.read_text().splitlines()
           if l and not l.startswith('#')]
  rows = list(csv.DictReader(lines))
  for r in rows:
    r['top_p'] = float(r['top_p']) if r['top_p'] else None
    for k in ('a', 'f1', 'gflops'):
      r[k] = float(r[k]) if r[k] else None
  return rows


def published_for(row: Row, dataset: str, table: str,
                  published: List[Dict[str, Any]]) -> Optional[Dict]:
  for p in published:
    if (p['dataset'] == dataset and p['table'] == table
        and p['model'] == row.model and p['modalities'] == row.modalities
        and (row.top_p is None or p['top_p'] == row.top_p)):
      return p
  return None


# --------------------------------------------------------------- formatting


def fmt(mean: float, std: float) -> str:
  if math.isnan(mean):
    return ''
  return f'{mean:.1f}' if math.isnan(std) else f'{mean:.1f} ± {std:.1f}'


def _num(x: Optional[float], digits: int = 3) -> str:
  return '' if x is None or (isinstance(x, float) and math.isnan(x)) \
      else f'{x:.{digits}g}' if abs(x) < 1e-2 else f'{x:.{digits}f}'


class Table:
  """A Markdown table and the CSV of the same numbers (means, stds apart)."""

  def __init__(self, title: str, note: str = ''):
    self.title, self.note = title, note
    self.md_head: List[str] = []
    self.md_rows: List[List[str]] = []
    self.csv_rows: List[Dict[str, Any]] = []

  def markdown(self) -> str:
    lines = [f'### {self.title}', '']
    if self.note:
      lines += [self.note, '']
    lines.append('| ' + ' | '.join(self.md_head) + ' |')
    lines.append('|' + '---|' * len(self.md_head))
    lines += ['| ' + ' | '.join(r) + ' |' for r in self.md_rows]
    return '\n'.join(lines) + '\n'

  def csv(self) -> str:
    if not self.csv_rows:
      return ''
    out = io.StringIO()
    keys = list(dict.fromkeys(k for r in self.csv_rows for k in r))
    writer = csv.DictWriter(out, keys, lineterminator='\n')
    writer.writeheader()
    writer.writerows(self.csv_rows)
    return out.getvalue()


def _base_csv(row: Row, dataset: str) -> Dict[str, Any]:
  return {'dataset': dataset, 'row': row.label, 'model': row.model,
          'modalities': row.modalities, 'top_p': row.top_p, 'n': row.n,
          'seeds': ' '.join(str(r['config']['seed']) for r in row.runs)}


def _flops_csv(row: Row) -> Dict[str, Any]:
  f = row.flops
  return {'gflops_cnn_effective': f.get('cnn_effective'),
          'gflops_cnn_executed': f.get('cnn'), 'gflops_total': f.get('total'),
          'flops_clip': f.get('clip')}


def main_table(dataset: str, rows: List[Row], split: str,
               published: List[Dict]) -> Table:
  key, name = metric_names(rows[0].runs[0])
  emotions = list(rows[0].runs[0]['thresholds'])
  number = {'iemocap': 'Table 3', 'mosei': 'Table 4'}.get(dataset, 'Table')
  t = Table(f'{number}: {dataset}, {split} split ({name} / F1 in %, mean ± '
            'std over n seeds)',
            'GFLOPs: the visual + audio CNNs on one typical clip '
            '(experiments/flops.py): effective (sparse stages charged for '
            'kept positions) / executed. Paper: its single-run averages '
            'and GFLOPs.')
  t.md_head = (['Model', 'n'] + [f'{e} {h}' for e in emotions
                                  for h in (name, 'F1')]
               + [f'Avg {name}', 'Avg F1', 'GFLOPs eff. / exec.',
                  f'Paper {name} / F1', 'Paper GFLOPs'])
  for row in rows:
    cells, record = [row.label, str(row.n)], _base_csv(row, dataset)
    for e in emotions + ['avg']:
      for metric, head in ((key, name), ('f1', 'F1')):
        mean, std = row.stat(f'{split}/{metric}/{e}')
        cells.append(fmt(mean, std))
        record[f'{e}_{head.lower()}_mean'] = mean
        record[f'{e}_{head.lower()}_std'] = std
    f = row.flops
    cells.append('n/a' if 'not_applicable' in f else
                 f"{_num(f.get('cnn_effective'))} / {_num(f.get('cnn'))}"
                 if f else '')
    paper = published_for(row, dataset, 'main', published)
    cells.append(f"{paper['a']} / {paper['f1']}" if paper else '')
    cells.append(_num(paper['gflops']) if paper and paper['gflops'] else '')
    record.update(_flops_csv(row))
    record.update({'paper_a': paper and paper['a'],
                   'paper_f1': paper and paper['f1'],
                   'paper_gflops': paper and paper['gflops']})
    t.md_rows.append(cells)
    t.csv_rows.append(record)
  return t


def ablation_table(dataset: str, rows: List[Row], split: str,
                   published: List[Dict]) -> Table:
  key, name = metric_names(rows[0].runs[0])
  t = Table(f'Modality ablation: {dataset}, {split} split ({name} / F1 in %, '
            'mean ± std over n seeds)')
  t.md_head = ['Model', 'Modalities', 'n', f'Avg {name}', 'Avg F1',
               f'Paper {name} / F1']
  for row in rows:
    a, f1 = row.stat(f'{split}/{key}/avg'), row.stat(f'{split}/f1/avg')
    paper = published_for(row, dataset, 'ablation', published)
    t.md_rows.append([row.label, row.modalities.upper(), str(row.n), fmt(*a),
                      fmt(*f1),
                      f"{paper['a']} / {paper['f1']}" if paper else ''])
    t.csv_rows.append({**_base_csv(row, dataset), 'a_mean': a[0],
                       'a_std': a[1], 'f1_mean': f1[0], 'f1_std': f1[1],
                       'paper_a': paper and paper['a'],
                       'paper_f1': paper and paper['f1']})
  return t


def top_p_table(dataset: str, rows: List[Row], split: str) -> Table:
  key, name = metric_names(rows[0].runs[0])
  fe2e = next((r for r in rows if r.model == 'fe2e'), None)
  ref = fe2e.flops.get('cnn') if fe2e and fe2e.flops else None
  t = Table(f'Top-p sweep: {dataset}, {split} split ({name} / F1 in %, mean '
            '± std over n seeds)',
            'CNN GFLOPs per typical clip; "/ FE2E": effective GFLOPs over '
            "FE2E's.")
  t.md_head = ['Model', 'p', 'n', f'Avg {name}', 'Avg F1', 'GFLOPs eff.',
               'GFLOPs exec.', 'eff. / FE2E']
  for row in rows:
    a, f1 = row.stat(f'{split}/{key}/avg'), row.stat(f'{split}/f1/avg')
    eff = row.flops.get('cnn_effective')
    ratio = eff / ref if eff is not None and ref else None
    t.md_rows.append([row.label, '' if row.top_p is None else f'{row.top_p:g}',
                      str(row.n), fmt(*a), fmt(*f1), _num(eff),
                      _num(row.flops.get('cnn')), _num(ratio)])
    t.csv_rows.append({**_base_csv(row, dataset), 'a_mean': a[0],
                       'a_std': a[1], 'f1_mean': f1[0], 'f1_std': f1[1],
                       **_flops_csv(row), 'effective_over_fe2e': ratio})
  return t


def top_p_plot(dataset: str, rows: List[Row], split: str,
               path: epath.Path) -> None:
  """F1 and WAcc/Acc against p and against effective GFLOPs (PNG)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  key, name = metric_names(rows[0].runs[0])
  mesm = [r for r in rows if r.model == 'mesm']
  fe2e = next((r for r in rows if r.model == 'fe2e'), None)
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for metric, label, marker in ((key, name, 'o'), ('f1', 'F1', 's')):
    stats = [r.stat(f'{split}/{metric}/avg') for r in mesm]
    mean = np.array([s[0] for s in stats])
    std = np.nan_to_num(np.array([s[1] for s in stats]))
    xs = ([r.top_p for r in mesm],
          [r.flops.get('cnn_effective', np.nan) for r in mesm])
    for ax, x in zip(axes, xs):
      line = ax.errorbar(x, mean, yerr=std, marker=marker, capsize=3,
                         label=f'MESM {label}')
      if fe2e is not None:
        ax.axhline(fe2e.stat(f'{split}/{metric}/avg')[0], ls='--',
                   color=line[0].get_color(), alpha=0.6,
                   label=f'FE2E {label}')
  axes[0].set_xlabel('top_p (nucleus threshold p)')
  axes[1].set_xlabel('effective CNN GFLOPs per clip')
  for ax in axes:
    ax.set_ylabel(f'{split} average (%)')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  n = sorted({r.n for r in mesm})
  fig.suptitle(f'MESM top-p sweep on {dataset} (mean ± std over '
               f"{'/'.join(map(str, n))} seeds)")
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=120)
  plt.close(fig)
  path.write_bytes(png.getvalue())


# --------------------------------------------------------------- main


def write_tables(dirs: Sequence[str], out: Optional[str] = None,
                 split: str = 'test') -> Dict[str, epath.Path]:
  """Writes every table the runs support; returns {name: path}."""
  runs, unfinished = find_runs(dirs)
  if not runs:
    raise FileNotFoundError(f'no finished run (results.json) under '
                            f'{", ".join(map(str, dirs))}')
  out_dir = paths.as_path(out) if out else paths.as_path(dirs[0]) / 'tables'
  out_dir.mkdir(parents=True, exist_ok=True)
  published = read_published()
  written, text = {}, []
  for dataset, rows in group(runs).items():
    tables = {'main': main_table(dataset, rows, split, published)}
    if len({r.modalities for r in rows}) > 1:
      tables['ablation'] = ablation_table(dataset, rows, split, published)
    mesm_ps = {r.top_p for r in rows if r.model == 'mesm'}
    if len(mesm_ps) > 1:
      tables['top_p'] = top_p_table(dataset, rows, split)
      png = out_dir / f'{dataset}_top_p.png'
      top_p_plot(dataset, rows, split, png)
      written[f'{dataset}_top_p_png'] = png
    for name, table in tables.items():
      for ext, content in (('md', table.markdown()), ('csv', table.csv())):
        path = out_dir / f'{dataset}_{name}.{ext}'
        path.write_text(content)
        written[f'{dataset}_{name}_{ext}'] = path
      text.append(table.markdown())
  print('\n'.join(text))
  if unfinished:
    print('not yet finished (left out): '
          + ', '.join(p.name for p in unfinished))
  print('written: ' + ', '.join(str(p) for p in written.values()))
  return written


def main(argv: Optional[Sequence[str]] = None) -> int:
  ap = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('dirs', nargs='+',
                  help="sweep directories (<workdirs>/<grid>) or run "
                       "workdirs' parents")
  ap.add_argument('--out', default='',
                  help='where to write (default <first dir>/tables)')
  ap.add_argument('--split', default='test', choices=('test', 'valid'))
  args = ap.parse_args(argv)
  try:
    write_tables(args.dirs, args.out or None, args.split)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
