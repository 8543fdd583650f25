r"""Wall-clock cost of FE2E and MESM: train step, inference, CNNs, stages.

    python experiments/perf/benchmark.py             # ~10 min on 2 (busy) CPU cores
    python experiments/perf/benchmark.py --sections fe,stages   # the targets, ~5 min
    python experiments/perf/benchmark.py --widths smoke --repeats 1   # compiles only, 1-4 min

Sections (``--sections``, comma-separated):
  fe        visual + audio CNNs alone (the feature extraction), forward +
            backward (gradient of the summed outputs w.r.t. all CNN params,
            BatchNorm in training mode): the target of MESM's sparsity;
  stages    the three sparse stages of both branches alone (dense VGG stage
            for FE2E), forward + backward, inputs masked by a nucleus of
            random scores;
  step      the whole model: a train step (forward + backward + Adam; a local
            ``value_and_grad`` of the weighted BCE loss, not the trainer's
            pmapped step) and an inference step (forward, eval mode);
  pipeline  the tf.data input pipeline's clips/s against the train step's;
  memory    planned peak memory (XLA ``memory_analysis``) of a forward +
            backward of the CNNs on a MOSEI batch at the config caps, with and
            without rematerialisation.

Variants: FE2E and MESM at p in --top_ps with each stage implementation in
--impls (``masked``, ``gathered``).  Timings: compile apart, one warm-up, then the median of
--repeats calls, interleaved round-robin over the variants so that other load
on the machine hits them alike.  Ratios are to FE2E.

``--compile_presets default,ynn_all`` times every variant once more with
XLA:CPU's YNNPACK taking all the fusion kinds it offers
(``experiments.perf.compute.CPU_COMPILE_PRESETS``); the labels of the second preset
end in `` [ynn_all]``.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # checkout

import argparse
import platform
import subprocess
import time
from typing import Dict, List, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.perf import compute, host_memory, pipeline
import mesm_jax
from mesm_jax.models import cnn as cnn_lib
from mesm_jax.models import conv as conv_lib
from mesm_jax.nucleus import nucleus_capacity, nucleus_mask
from mesm_jax.train.flags import str2bool

def variants(args):
  yield 'FE2E', 'fe2e', 1.0, 'masked'
  for p in args.top_ps:
    for impl in args.impls:
      yield f'MESM p={p:g} {impl}', 'mesm', p, impl


def compiled_variants(args, timer, base):
  """``variants`` once per ``--compile_presets`` and ``--conv_chunks``
  entry, with the config of that ``conv_chunk``; the timer learns each
  label's compile options.  Labels get `` [preset]`` and `` [conv_chunk N]``
  beyond the first entry of each."""
  for i, preset in enumerate(args.compile_presets):
    for j, chunk in enumerate(args.conv_chunks):
      cbase = base.copy_and_resolve_references()
      cbase.conv_chunk = chunk
      for label, kind, p, impl in variants(args):
        label = label if i == 0 else f'{label} [{preset}]'
        label = label if j == 0 else f'{label} [conv_chunk {chunk}]'
        timer.compiler_options[label] = compute.compile_options(preset)
        yield label, kind, p, impl, cbase


def _cnn_loss(cnn, variables, x, w, q):
  (y, _), _ = cnn.apply(variables, x, w, q, True, mutable=['batch_stats'])
  return jnp.sum(y * y) * 1e-3


def fe_case(base, label, kind, p, impl, args, timer) -> None:
  """Register the visual + audio CNN forward+backward of one variant."""
  config = compute.model_config(base, kind, p, impl)
  batch = compute.make_batch(base, args.batch, args.frames, args.chunks)
  q_dim = 768 if args.widths == 'paper' else base.scratch_text_dim
  inputs, params = [], []
  for branch in ('visual', 'audio'):
    x, w = compute.cnn_inputs(batch, branch)
    q = np.random.default_rng(0).standard_normal(
        (x.shape[0], q_dim)).astype(np.float32) if kind == 'mesm' else None
    cnn = compute.frame_cnn(config, f'{branch}_cnn')
    variables = jax.jit(lambda x, w, q: cnn.init(jax.random.key(0), x, w, q,
                                                 True))(x, w, q)
    inputs.append((cnn, x, w, q))
    params.append(variables)

  def fb(variables, data):
    total = 0.0
    for (cnn, *_), v, (x, w, q) in zip(inputs, variables, data):
      total += _cnn_loss(cnn, v, x, w, q)
    return total

  data = [(x, w, q) for _, x, w, q in inputs]
  timer.add(label, jax.grad(fb), params, data)


def stage_inputs(branch, s, h, w, cin, p, n_frames, seed):
  """A stage's input: random features, kept where a nucleus of random
  scores says (p >= 1: all positions)."""
  rng = np.random.default_rng(seed + s)
  x = rng.standard_normal((n_frames, h, w, cin)).astype(np.float32)
  scores = rng.standard_normal((n_frames, h * w)).astype(np.float32)
  probs = jax.nn.softmax(jnp.asarray(scores), axis=-1)
  keep = np.asarray(nucleus_mask(probs, p)).reshape(n_frames, h, w)
  return x * keep[..., None], keep


class _Stage(nn.Module):
  """One stage (dense VGG + pool, or sparse) for the stage benchmark."""
  features: int
  kind: str
  impl: str
  capacity: int
  conv_chunk: int = -1

  @nn.compact
  def __call__(self, x, active, weight):
    if self.kind == 'fe2e':
      return cnn_lib.VGGBlock(self.features, pool=True, train=True,
                              conv_chunk=self.conv_chunk)(x, weight)
    return cnn_lib.SparseVGGStage(self.features, self.capacity, self.impl,
                                  train=True, conv_chunk=self.conv_chunk)(
                                      x, active, weight)[0]


def stages_case(base, label, kind, p, impl, args, timer) -> None:
  """Register all six sparse stages (forward + backward) of one variant."""
  cases = []
  for branch, frames in (('visual', args.frames), ('audio', args.chunks)):
    n = args.batch * frames
    for s, h, w, cin, cout in compute.stage_geometry(branch,
                                                    base.cnn_features):
      x, keep = stage_inputs(branch, s, h, w, cin, p if kind == 'mesm' else
                             1.0, n, args.seed)
      module = _Stage(cout, kind, impl, nucleus_capacity(h * w, p),
                      base.conv_chunk)
      wt = np.ones((n,), np.float32)
      v = jax.jit(module.init)(jax.random.key(s), x, keep, wt)
      cases.append((module, v, x, keep, wt))

  def fb(variables, data):
    total = 0.0
    for (module, *_), v, (x, keep, wt) in zip(cases, variables, data):
      y, _ = module.apply(v, x, keep, wt, mutable=['batch_stats'])
      total += jnp.sum(y * y) * 1e-3
    return total

  timer.add(label, jax.grad(fb), [c[1] for c in cases],
            [(c[2], c[3], c[4]) for c in cases])


def step_cases(base, label, kind, p, impl, args, train_timer, infer_timer):
  """Register the train step and the inference step of one variant."""
  config = compute.model_config(base, kind, p, impl)
  batch = compute.make_batch(base, args.batch, args.frames, args.chunks)
  model, variables = compute.build(config, args.text, sample=batch)
  tx = optax.adam(config.lr)
  opt_state = tx.init(variables['params'])
  pos_weight = jnp.full((config.num_emotions,), 2.0)

  def train_step(variables, opt_state, batch, key):
    def loss_fn(params):
      out, new = model.apply({**variables, 'params': params}, batch,
                             train=True, rngs={'dropout': key},
                             mutable=['batch_stats'])
      loss = optax.sigmoid_binary_cross_entropy(out['logits'], batch['labels'])
      weight = jnp.where(batch['labels'] > 0, pos_weight, 1.0)
      return jnp.mean(loss * weight), new
    (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        variables['params'])
    updates, opt_state = tx.update(grads, opt_state, variables['params'])
    params = optax.apply_updates(variables['params'], updates)
    return {**variables, **new, 'params': params}, opt_state, loss

  def infer_step(variables, batch):
    return jax.nn.sigmoid(model.apply(variables, batch, train=False)['logits'])

  train_timer.add(label, train_step, variables, opt_state, batch,
                  jax.random.key(0))
  infer_timer.add(label, infer_step, variables, batch)


def ratio_table(title, secs, compile_s, clips, memory=None,
                fe2e='FE2E', cpu=None) -> str:
  """Median time, clips/s, ratio to FE2E, median CPU time (all threads) and
  the cores it kept busy (CPU / wall), compile time and XLA's planned peak
  scratch memory (``memory_analysis().temp_size_in_bytes``)."""
  memory, cpu = memory or {}, cpu or {}
  lines = [f'\n### {title}\n',
           '| variant | median s/call | clips/s | x FE2E time | CPU s/call '
           '| x FE2E CPU | cores busy | compile s | XLA temp MiB |',
           '|---|---|---|---|---|---|---|---|---|']
  for k, v in secs.items():
    temp = memory.get(k, {}).get('temp')
    temp = 'n/a' if temp is None else f'{temp / 2**20:.0f}'
    if k in cpu and fe2e in cpu:
      cpu_cells = (f'{cpu[k]:.3f} | {cpu[k] / cpu[fe2e]:.3f} | '
                   f'{cpu[k] / v:.2f}')
    else:
      cpu_cells = 'n/a | n/a | n/a'
    lines.append(f'| {k} | {v:.3f} | {clips / v:.2f} | {v / secs[fe2e]:.3f} '
                 f'| {cpu_cells} | {compile_s[k]:.1f} | {temp} |')
  return '\n'.join(lines)


def print_timer(title, timer, secs, clips) -> None:
  print(ratio_table(title, secs, timer.compile_s, clips, timer.memory,
                    cpu=timer.cpu_seconds()), flush=True)


def run_timed(title, builder, base, args, clips) -> Dict[str, float]:
  timer = compute.Timer(args.repeats, args.warmup)
  for label, kind, p, impl, cbase in compiled_variants(args, timer, base):
    builder(cbase, label, kind, p, impl, args, timer)
  secs = timer.run()
  print_timer(title, timer, secs, clips)
  return secs


def section_step(base, args, clips) -> Dict[str, Dict[str, float]]:
  train_t = compute.Timer(args.repeats, args.warmup)
  infer_t = compute.Timer(args.repeats, args.warmup)
  for label, kind, p, impl, cbase in compiled_variants(args, train_t, base):
    infer_t.compiler_options[label] = train_t.compiler_options[label]
    step_cases(cbase, label, kind, p, impl, args, train_t, infer_t)
  train, infer = train_t.run(), infer_t.run()
  print_timer('Train step (forward + backward + Adam)', train_t, train, clips)
  print_timer('Inference step (forward, eval mode)', infer_t, infer, clips)
  return {'train': train, 'infer': infer}


def section_pipeline(base, args, train_secs) -> Dict[str, float]:
  """tf.data clips/s (``perf.pipeline.measure``) vs the train step's."""
  print('\n### Input pipeline vs train step\n')
  need = {k: args.batch / v for k, v in (train_secs or {}).items()}
  try:
    config = base.copy_and_resolve_references()
    config.dataset = args.pipeline_dataset
    if args.pipeline_data_dir:
      config.data_dir = args.pipeline_data_dir
    m = pipeline.measure(config, 'train', args.pipeline_batches, train=True)
    print(f"input pipeline ({args.pipeline_dataset}, train split): "
          f"{m['clips_per_s']:.1f} clips/s")
    for k, v in need.items():
      print(f'  {k}: train step consumes {v:.2f} clips/s -> pipeline / step = '
            f"{m['clips_per_s'] / v:.1f}x")
    return {'pipeline_clips_per_s': m['clips_per_s'], **need}
  except Exception as e:  # pylint: disable=broad-except
    print(f'input pipeline: not available here ({type(e).__name__}: '
          f'{str(e).splitlines()[0][:200]}); train step consumes '
          + ', '.join(f'{k} {v:.2f} clips/s' for k, v in need.items()))
    return need


def section_memory(base, args) -> List[Dict]:
  """Planned peak memory of CNN forward+backward on a capped MOSEI batch."""
  cfg = mesm_jax.get_config('mosei')
  frames, chunks = cfg.max_frames, cfg.max_chunks
  print(f'\n### Memory: CNNs forward + backward, batch {args.memory_batch} '
        f'MOSEI clips at the caps (max_frames {frames}, max_chunks {chunks}),'
        f' widths {args.widths}\n')
  print('| variant | remat | XLA temp GiB | arguments GiB |')
  print('|---|---|---|---|')
  rows = []
  mem_args = argparse.Namespace(**{**vars(args), 'batch': args.memory_batch,
                                   'frames': frames, 'chunks': chunks})
  for remat in (False, True):
    for label, kind, p, impl in variants(args):
      if impl == 'masked' and kind == 'mesm' and p != args.top_ps[0]:
        continue
      case = Capture()
      rbase = compute.model_config(base, 'fe2e', remat=remat,
                                   conv_chunk=args.conv_chunks[0])
      fe_case(rbase, label, kind, p, impl, mem_args, case)
      memory = compute.xla_memory(case.fn, *case.args)
      gib = {k: v / 2**30 for k, v in memory.items()}
      print(f"| {label} | {remat} | {gib.get('temp', float('nan')):.2f} | "
            f"{gib.get('argument', float('nan')):.2f} |", flush=True)
      rows.append(dict(variant=label, remat=remat, **gib))
  return rows


def add_fe_case_args(ap: argparse.ArgumentParser) -> None:
  """Options of the scripts that profile the feature-extraction case
  (``profile_ops.py``, ``cpu_profile.py``)."""
  ap.add_argument('--variants', default='fe2e,gathered',
                  help='fe2e and/or sparse implementations (MESM)')
  ap.add_argument('--top_p', type=float, default=0.5)
  ap.add_argument('--frames', type=int, default=9)
  ap.add_argument('--chunks', type=int, default=11)
  ap.add_argument('--keep_freed_memory', type=str2bool, default=True,
                  help='as in benchmark.py')


def fe_captures(args) -> Tuple[str, List[Tuple[str, 'Capture']]]:
  """The host-memory setting applied, and ``(label, Capture)`` of the
  feature-extraction case (paper widths) of every ``args.variants`` entry."""
  memory_setting = host_memory_setting(args.keep_freed_memory)
  bargs = parse(['--frames', str(args.frames), '--chunks', str(args.chunks)])
  base = base_config('paper')
  captures = []
  for variant in args.variants.split(','):
    cap = Capture()
    if variant == 'fe2e':
      label = 'FE2E'
      fe_case(base, label, 'fe2e', 1.0, 'masked', bargs, cap)
    else:
      label = f'MESM p={args.top_p:g} {variant}'
      fe_case(base, label, 'mesm', args.top_p, variant, bargs, cap)
    captures.append((label, cap))
  return memory_setting, captures


class Capture:
  """Stands in for a Timer: keeps the case's function and arguments (for
  the memory plan here, for the profiler in ``profile_ops.py``)."""

  def add(self, name, fn, *args):
    del name
    self.fn, self.args = fn, args


def describe_machine() -> str:
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
    model = [l.split(':', 1)[1].strip() for l in out.splitlines()
             if l.startswith('Model name')][0]
  except Exception:  # pylint: disable=broad-except
    model = platform.processor() or 'unknown CPU'
  dev = jax.devices()[0]
  return (f'{dev.platform} ({dev.device_kind}), {model}, '
          f'{len(jax.devices())} device(s), JAX {jax.__version__}, '
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def parse(argv):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--sections', default='fe,stages,step,pipeline,memory')
  ap.add_argument('--widths', default='paper', choices=('paper', 'smoke'))
  ap.add_argument('--text', default='config', choices=('config', 'albert_base'),
                  help="text encoder of the step section: the config's "
                       "(paper widths: 2-layer 768-wide scratch) or an "
                       'ALBERT-base-sized random one')
  ap.add_argument('--batch', type=int, default=1, help='clips per batch')
  ap.add_argument('--frames', type=int, default=9, help='face frames a clip')
  ap.add_argument('--chunks', type=int, default=11, help='audio chunks a clip')
  ap.add_argument('--top_ps', default='0.5,0.7')
  ap.add_argument('--impls', default='masked,gathered')
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--warmup', type=int, default=1)
  ap.add_argument('--seed', type=int, default=0)
  ap.add_argument('--memory_batch', type=int, default=8)
  ap.add_argument('--pipeline_dataset', default='synthetic')
  ap.add_argument('--pipeline_data_dir', default='')
  ap.add_argument('--pipeline_batches', type=int, default=20)
  ap.add_argument('--keep_freed_memory', type=str2bool, default=True,
                  help='glibc keeps freed memory for reuse (experiments/'
                       'perf/host_memory.py): no page faults on XLA:CPU scratch')
  ap.add_argument('--compile_presets', default='default',
                  help='XLA:CPU compile presets (experiments.perf.compute.'
                       'CPU_COMPILE_PRESETS), comma-separated: every variant '
                       'once per preset; ratios are to the first preset\'s '
                       'FE2E. Ignored on other backends.')
  ap.add_argument('--conv_chunks', default='auto',
                  help='config.conv_chunk values, comma-separated: every '
                       'variant once per value (auto = -1: 16 frames per '
                       'dense convolution on CPU, one piece elsewhere; 0: '
                       'one piece; N: at most N frames); ratios are to the '
                       'first value\'s FE2E')
  args = ap.parse_args(argv)
  args.compile_presets = args.compile_presets.split(',')
  given = args.conv_chunks
  try:
    args.conv_chunks = [conv_lib.check_chunk(-1 if c == 'auto' else int(c))
                        for c in given.split(',')]
  except ValueError:
    ap.error('--conv_chunks takes auto (or -1), 0 or frame counts, '
             f'comma-separated; got {given!r}')
  unknown = set(args.compile_presets) - set(compute.CPU_COMPILE_PRESETS)
  if unknown:  # checked here without starting the backend (host memory first)
    ap.error(f'unknown --compile_presets {sorted(unknown)}; choose from '
             f'{sorted(compute.CPU_COMPILE_PRESETS)}')
  args.top_ps = [float(p) for p in args.top_ps.split(',')]
  args.impls = args.impls.split(',')
  args.sections = args.sections.split(',')
  return args


def base_config(widths: str):
  base = mesm_jax.get_config('smoke' if widths == 'smoke' else 'default')
  base.text_model = 'scratch'
  return base


def host_memory_setting(keep: bool) -> str:
  """Apply ``--keep_freed_memory`` (before the first computation)."""
  if keep and host_memory.keep_freed_memory():
    return 'freed memory kept for reuse (glibc mallopt)'
  return 'default allocator settings'


def main(argv=None) -> Dict:
  args = parse(argv)
  memory_setting = host_memory_setting(args.keep_freed_memory)
  base = base_config(args.widths)
  clips = args.batch
  print(f'# Benchmark: {describe_machine()}')
  print(f'widths {args.widths}, batch {args.batch} clips x {args.frames} '
        f'frames / {args.chunks} chunks, repeats {args.repeats} (median), '
        f'warm-up {args.warmup}; host memory: {memory_setting}; compile '
        f'presets: ' + ', '.join(
            f'{p} {compute.compile_options(p) or "(XLA defaults)"}'
            for p in args.compile_presets)
        + '; conv_chunk: ' + ', '.join(
            f'{c} ({conv_lib.resolve_chunk(c) or "one piece"})'
            for c in args.conv_chunks))
  results = {}
  if 'fe' in args.sections:
    results['fe'] = run_timed(
        'Feature extraction: visual + audio CNNs, forward + backward',
        fe_case, base, args, clips)
  if 'stages' in args.sections:
    results['stages'] = run_timed(
        'Stages 3-5 of both CNNs alone, forward + backward', stages_case,
        base, args, clips)
  if 'step' in args.sections:
    results['step'] = section_step(base, args, clips)
  if 'pipeline' in args.sections:
    train = results.get('step', {}).get('train')
    results['pipeline'] = section_pipeline(base, args, train)
  if 'memory' in args.sections:
    results['memory'] = section_memory(base, args)
  peak, source = compute.peak_memory_bytes()
  print(f'\npeak memory of this process: {peak / 2**30:.2f} GiB ({source})')
  results['peak_bytes'] = peak
  return results


if __name__ == '__main__':
  main(sys.argv[1:])
