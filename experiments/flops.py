r"""FLOPs of one clip for FE2E and MESM, split by part, as XLA counts them.

    python experiments/flops.py                      # paper widths, both clips
    python experiments/flops.py --widths smoke --text config --clips iemocap

For each typical clip (IEMOCAP ~4.5 s: 9 frames, 11 chunks; MOSEI ~24 s: 48
frames, 61 chunks) and each model (FE2E; MESM at p in --top_ps with the
``masked`` and ``gathered`` stages) it compiles the forward pass of one clip
(inference mode) and reads ``compile().cost_analysis()['flops']`` for the
whole model and for each part alone: the text encoder, the visual CNN, the
audio CNN; the rest is the Transformers, heads and fusion.  XLA counts a
multiply-add as 2 FLOPs.

Static shapes: the ``masked`` stages compute every position, so their XLA
count does not shrink with p; the ``gathered`` stages compute ``K = ceil(p n)``
slots per frame, so theirs does.  The *effective* count charges the sparse
stages only for the positions the nucleus actually kept, measured by running
the model on a synthetic batch (random inputs; the faithful attention never
trains, so its random initial weights are what a trained model uses too).
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # checkout

import argparse
import json
from typing import Dict, List, Optional

import jax
import jax.numpy as jnp
import ml_collections


from experiments.perf import compute
import mesm_jax

G = 1e9


def forward_flops(model, variables, batch) -> float:
  """XLA FLOPs of the whole forward pass (inference mode) of one batch."""
  return compute.xla_flops(
      lambda v, b: model.apply(v, b, train=False)['logits'], variables, batch)


def clip_forward_flops(config, frames: int, chunks: int,
                       text: str = 'config') -> float:
  """``forward_flops`` of one clip of ``frames`` frames and ``chunks``
  chunks (``text='albert_base'``: an ALBERT-base-sized text encoder)."""
  batch = compute.make_batch(config, 1, frames, chunks)
  model, variables = compute.build(config, text, sample=batch)
  return forward_flops(model, variables, batch)


def part_flops(config, model, variables, batch) -> Dict[str, float]:
  """XLA FLOPs of the whole forward pass and of each part (one batch)."""
  params = variables['params']
  stats = variables.get('batch_stats', {})
  out = {'total': forward_flops(model, variables, batch)}
  q = None
  if 't' in config.modalities:
    enc = model.text_encoder
    out['text'] = compute.xla_flops(
        lambda p, i, m: enc.apply({'params': p}, i, m, train=False)[1],
        params['text_encoder'], batch['text_ids'], batch['text_mask'])
    q = jax.jit(lambda p, i, m: enc.apply({'params': p}, i, m,
                                          train=False)[1])(
        params['text_encoder'], batch['text_ids'][:1], batch['text_mask'][:1])
  for branch in present_branches(config):
    name = f'{branch}_cnn'
    x, w = compute.cnn_inputs(batch, branch)
    cnn = compute.frame_cnn(config, name)
    qn = None if q is None else jnp.repeat(q, x.shape[0], axis=0)
    out[name] = compute.xla_flops(
        lambda v, x, w, q: cnn.apply(v, x, w, q, False)[0],
        {'params': params[name], 'batch_stats': stats.get(name, {})}, x, w, qn)
  out['rest'] = out['total'] - out.get('text', 0.0) - out.get(
      'visual_cnn', 0.0) - out.get('audio_cnn', 0.0)
  return out


def present_branches(config) -> List[str]:
  """The CNN branches of ``config.modalities``: 'visual' and/or 'audio'."""
  return [b for b, m in (('visual', 'v'), ('audio', 'a'))
          if m in config.modalities]


def kept_fractions(model, variables, batch) -> Dict[str, Dict[int, float]]:
  """Mean fraction of each sparse stage's positions kept, per branch."""
  stats = jax.jit(lambda v, b: model.apply(v, b, train=False)['stats'])(
      variables, batch)
  out = {'visual': {}, 'audio': {}}
  for key, value in stats.items():
    _, m, stage = key.split('_')          # kept_<v|a>_stage<s>
    out['visual' if m == 'v' else 'audio'][int(stage[-1])] = float(value)
  return out


def variants(top_ps: List[float], impls: List[str]):
  yield 'FE2E', 'fe2e', 1.0, 'masked'
  for p in top_ps:
    for impl in impls:
      yield f'MESM p={p:g} {impl}', 'mesm', p, impl


def clip_table(base, clip: str, args, only: str = '',
               sizes: Optional[Dict] = None) -> List[Dict]:
  """Rows of one clip's table (GFLOPs), FE2E first.

  ``only='fe2e'``: the FE2E row alone (``'mesm'``: FE2E and the MESM rows);
  ``sizes``: the clip's frames and chunks (default ``compute.CLIPS[clip]``).
  """
  sizes = sizes or compute.CLIPS[clip]
  batch = compute.make_batch(base, 1, sizes['frames'], sizes['chunks'])
  kept_batch = compute.make_batch(base, args.kept_batch, sizes['frames'],
                                  sizes['chunks'], seed=1)
  rows, fe2e = [], None
  for label, kind, p, impl in variants(args.top_ps, args.impls):
    if only == 'fe2e' and kind != 'fe2e':
      continue
    config = compute.model_config(base, kind, p, impl)
    model, variables = compute.build(config, args.text, sample=batch)
    parts = part_flops(config, model, variables, batch)
    row = dict(clip=clip, variant=label, model=kind, top_p=p, impl=impl,
               frames=sizes['frames'], chunks=sizes['chunks'],
               **{k: v / G for k, v in parts.items()})
    row['cnn'] = row.get('visual_cnn', 0.0) + row.get('audio_cnn', 0.0)
    if kind == 'fe2e':
      fe2e = row
      row['cnn_effective'] = row['cnn']
    else:
      row['kept'] = kept_fractions(model, variables, kept_batch)
      row['cnn_effective'] = effective(row, fe2e, config, sizes, clip)
    rows.append(row)
  return rows


def effective(row, fe2e, config, sizes, clip) -> float:
  """Effective CNN GFLOPs: FE2E's minus the skipped positions' conv work,
  plus the attention layers (MESM masked count minus FE2E's, per branch)."""
  total = 0.0
  frames_of = {'visual': sizes['frames'], 'audio': sizes['chunks']}
  for branch in present_branches(config):
    frames = frames_of[branch]
    dense = fe2e[f'{branch}_cnn'] * G
    extra = 0.0
    if row['impl'] == 'masked':
      extra = row[f'{branch}_cnn'] * G - dense  # attention + masking only
    else:
      extra = row.get(f'_{branch}_attention', 0.0)
    total += compute.effective_cnn_flops(
        dense, branch, config.cnn_features, row['kept'][branch], frames, extra)
  return total / G


def fix_gathered_attention(rows) -> None:
  """Gathered rows reuse the masked rows' attention cost (same layers)."""
  masked = {(r['clip'], r['top_p']): r for r in rows if r['impl'] == 'masked'
            and r['model'] == 'mesm'}
  fe2e = {r['clip']: r for r in rows if r['model'] == 'fe2e'}
  for r in rows:
    m = masked.get((r['clip'], r['top_p']))
    if r['model'] != 'mesm' or r['impl'] != 'gathered' or m is None:
      continue
    extra = sum(m.get(f'{b}_cnn', 0.0) - fe2e[r['clip']].get(f'{b}_cnn', 0.0)
                for b in ('visual', 'audio'))
    r['cnn_effective'] += extra


def run_flops(config, text: str = 'config', kept_batch: int = 2) -> Dict:
  """The FLOPs of one run's config on its dataset's typical clip (GFLOPs).

  What ``experiments/sweep.py`` stores beside each cell's results
  (``flops.json``): the clip (IEMOCAP's or MOSEI's typical clip; for other
  datasets ``max_frames`` face frames and ``max_chunks`` chunks), and for
  the config's model, modalities, top_p and ``sparse_impl``: ``total`` (the
  whole forward pass as XLA executes it), ``cnn`` (the visual + audio CNNs,
  executed) and ``cnn_effective`` (MESM: the sparse stages charged for kept
  positions only; FE2E: ``cnn``), with ``kept`` fractions for MESM and the
  FE2E row of the same config for reference.
  """
  config = ml_collections.ConfigDict(config)  # a thawed copy (may be frozen)
  clip = config.dataset if config.dataset in compute.CLIPS else 'config'
  sizes = compute.CLIPS.get(clip) or dict(
      seconds=None, frames=int(config.max_frames),
      chunks=int(config.max_chunks))
  # The gathered rows take their attention cost from the masked row.
  impls = sorted({'masked', config.sparse_impl})
  args = argparse.Namespace(top_ps=[float(config.top_p)], impls=impls,
                            text=text, kept_batch=kept_batch)
  rows = clip_table(config, clip, args, only=config.model, sizes=sizes)
  fix_gathered_attention(rows)
  fe2e = rows[0]
  row = fe2e if config.model == 'fe2e' else next(
      r for r in rows[1:] if r['impl'] == config.sparse_impl)
  keys = ('total', 'text', 'visual_cnn', 'audio_cnn', 'rest', 'cnn',
          'cnn_effective')
  out = {'clip': clip, 'frames': sizes['frames'], 'chunks': sizes['chunks'],
         'model': config.model, 'modalities': config.modalities,
         'top_p': float(config.top_p) if config.model == 'mesm' else None,
         'impl': config.sparse_impl if config.model == 'mesm' else None,
         'unit': 'GFLOPs per clip (XLA cost analysis, multiply-add = 2)',
         **{k: float(row[k]) for k in keys if k in row},
         'fe2e': {k: float(fe2e[k]) for k in keys if k in fe2e}}
  if 'kept' in row:
    out['kept'] = row['kept']
  return out


def paper_figure(row) -> Optional[float]:
  if row['model'] == 'fe2e':
    return compute.PAPER_GFLOPS['fe2e']
  return compute.PAPER_GFLOPS.get(f"mesm_p{row['top_p']:g}")


def format_table(rows) -> str:
  head = ('| variant | text | visual CNN | audio CNN | transf.+heads | total | '
          'CNN (V+A) | CNN eff. | CNN / FE2E | eff. / FE2E | paper |')
  lines = [head, '|' + '---|' * 11]
  fe2e = rows[0]
  for r in rows:
    paper = paper_figure(r)
    lines.append(
        f"| {r['variant']} | {r.get('text', 0):.2f} | {r['visual_cnn']:.2f} | "
        f"{r['audio_cnn']:.2f} | {r['rest']:.2f} | {r['total']:.2f} | "
        f"{r['cnn']:.2f} | {r['cnn_effective']:.2f} | "
        f"{r['cnn'] / fe2e['cnn']:.3f} | "
        f"{r['cnn_effective'] / fe2e['cnn']:.3f} | "
        f"{'' if paper is None else paper} |")
  return '\n'.join(lines)


def unit_check(rows) -> str:
  """Which of our counts (FLOPs or MACs = FLOPs / 2) is nearest 8.65."""
  fe2e = rows[0]
  cands = {
      'V+A CNN FLOPs': fe2e['cnn'], 'V+A CNN MACs': fe2e['cnn'] / 2,
      'visual CNN FLOPs': fe2e['visual_cnn'],
      'visual CNN MACs': fe2e['visual_cnn'] / 2,
      'audio CNN FLOPs': fe2e['audio_cnn'],
      'audio CNN MACs': fe2e['audio_cnn'] / 2,
      'whole model FLOPs': fe2e['total'], 'whole model MACs': fe2e['total'] / 2,
  }
  paper = compute.PAPER_GFLOPS['fe2e']
  best = min(cands, key=lambda k: abs(cands[k] - paper))
  listed = ', '.join(f'{k} {v:.2f}' for k, v in cands.items())
  return (f"FE2E {fe2e['clip']} ({fe2e['frames']} frames, {fe2e['chunks']} "
          f"chunks), G: {listed}. Nearest to the paper's {paper}: {best}.")


def parse(argv):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--clips', default='iemocap,mosei')
  ap.add_argument('--widths', default='paper', choices=('paper', 'smoke'))
  ap.add_argument('--text', default='albert_base',
                  choices=('albert_base', 'config'),
                  help="albert_base: ALBERT base sized, random init; config: "
                       "the config's text_model (smoke: tiny scratch)")
  ap.add_argument('--top_ps', default='0.5,0.7,1.0')
  ap.add_argument('--impls', default='masked,gathered')
  ap.add_argument('--kept_batch', type=int, default=2,
                  help='clips run to measure the kept fractions')
  ap.add_argument('--json', default='', help='also write the rows here')
  args = ap.parse_args(argv)
  args.top_ps = [float(p) for p in args.top_ps.split(',')]
  args.impls = args.impls.split(',')
  args.clips = args.clips.split(',')
  return args


def base_config(widths: str, text: str):
  base = mesm_jax.get_config('smoke' if widths == 'smoke' else 'default')
  if text == 'albert_base':
    base.text_max_len = 100
  elif base.text_model != 'scratch':
    base.text_model = 'scratch'  # no checkpoint needed for counting
  return base


def main(argv=None) -> List[Dict]:
  args = parse(argv)
  base = base_config(args.widths, args.text)
  text = ('ALBERT base v2 sized (random init)' if args.text == 'albert_base'
          else f'scratch ({base.scratch_text_layers} layers x '
               f'{base.scratch_text_dim})')
  print(f'# FLOPs per clip (GFLOPs, XLA cost analysis; multiply-add = 2 '
        f'FLOPs); widths {args.widths}, text {text}, '
        f'{base.text_max_len} tokens, JAX {jax.__version__}')
  rows = []
  for clip in args.clips:
    clip_rows = clip_table(base, clip, args)
    fix_gathered_attention(clip_rows)
    s = compute.CLIPS[clip]
    print(f"\n## {clip}: {s['seconds']} s, {s['frames']} frames, "
          f"{s['chunks']} chunks\n")
    print(format_table(clip_rows))
    for r in clip_rows[1:]:
      kept = {b: {k: round(v, 3) for k, v in d.items()}
              for b, d in r['kept'].items()}
      print(f"kept fractions {r['variant']}: {kept}")
    print(unit_check(clip_rows))
    rows += clip_rows
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=1, default=float)
  return rows


if __name__ == '__main__':
  main(sys.argv[1:])
