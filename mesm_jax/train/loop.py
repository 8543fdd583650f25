"""Training and evaluation of MESM / FE2E: ``train_and_evaluate``, ``evaluate``.

One epoch = the training split once, in an order fixed by ``seed`` and the
epoch number; then the validation split (thresholds chosen there) and the test
split (validation thresholds applied).  The validation average F1 picks the
best checkpoint and drives early stopping (``early_stop`` epochs without a
better score).  A rerun in the same work directory continues from the latest
checkpoint, at the same position in the same epoch.

The config is read, never written: the loop freezes it
(``ml_collections.FrozenConfigDict``), and what it derives lives in its own
state: ``Context`` (built once per run: data, devices, the evaluation batch
fitted to them, model, checkpoints) and ``RunState`` (where training stands,
saved with every latest checkpoint).
"""

import dataclasses
import functools
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import jax
import ml_collections
import numpy as np

from mesm_jax import configs
from mesm_jax import models
from mesm_jax import platforms
from mesm_jax import restore as restore_lib
from mesm_jax import text
from mesm_jax.train import aot
from mesm_jax.train import checkpoint as ckpt_lib
from mesm_jax.train import data as data_lib
from mesm_jax.train import logging as log_lib
from mesm_jax.train import metrics as metrics_lib
from mesm_jax.train import optim
from mesm_jax.train import parallel
from mesm_jax.train import step as step_lib
from mesm_jax.train import workdir as workdir_lib


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


def setup_distributed() -> None:
  """``jax.distributed.initialize()`` when launched as several processes.

  Detected from the environment: an explicit coordinator
  (``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID``; jax itself reads only the address), a Cloud TPU VM
  (TPU chips attached, or several worker hostnames; jax reads the slice's
  hosts from the VM's metadata, and a single-host VM is a slice of one),
  SLURM or Open MPI with more than one task (jax detects the rest).
  Processes on CPU exchange their collectives with gloo.  Call it before
  anything touches a JAX device.
  """
  env = os.environ
  several = (
      'JAX_COORDINATOR_ADDRESS' in env
      or ',' in env.get('TPU_WORKER_HOSTNAMES', '')
      or int(env.get('SLURM_NTASKS', '1')) > 1
      or int(env.get('OMPI_COMM_WORLD_SIZE', '1')) > 1
      or platforms.cloud_tpu_chips() > 0)
  if not several or jax.distributed.is_initialized():
    return
  kwargs = {}
  for key, name in (('num_processes', 'JAX_NUM_PROCESSES'),
                    ('process_id', 'JAX_PROCESS_ID')):
    if env.get(name, '') != '':
      kwargs[key] = int(env[name])
  if 'JAX_COORDINATOR_ADDRESS' in env and len(kwargs) < 2 and not (
      int(env.get('SLURM_NTASKS', '1')) > 1
      or int(env.get('OMPI_COMM_WORLD_SIZE', '1')) > 1):
    raise ValueError('JAX_COORDINATOR_ADDRESS is set: set JAX_NUM_PROCESSES '
                     'and JAX_PROCESS_ID as well (the same number of '
                     'processes everywhere, ids 0, 1, ...)')
  # gloo for collectives between CPU processes (jax's default since 0.5;
  # an explicit --jax_cpu_collectives_implementation / env var is kept).
  if (not env.get('JAX_CPU_COLLECTIVES_IMPLEMENTATION')
      and jax.config.jax_cpu_collectives_implementation is None):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)


def init_state(config, model,
               sample: Dict[str, np.ndarray]) -> step_lib.TrainState:
  """Fresh parameters (pretrained text encoder unless 'scratch') and Adam.

  ``config.init``: 'flax' keeps the values of ``model.init``; 'pytorch'
  draws them again by PyTorch's default rules (``models.pytorch_init``), all
  but the text encoder's.  The baselines (``configs.is_baseline``) keep their
  modules' own initialisation whatever ``init`` says (e.g. EmoEmbs' fusion
  weights 1/M; its emotion embeddings are frozen word vectors, a constant of
  the model) and load no text encoder.
  """
  rng = jax.random.PRNGKey(config.seed)
  init_rng, dropout_rng, train_rng = jax.random.split(rng, 3)
  sample = jax.tree.map(lambda x: x[:1], step_lib.model_inputs(sample))
  init = jax.jit(functools.partial(model.init, train=False))
  variables = init({'params': init_rng, 'dropout': dropout_rng}, sample)
  params = dict(variables['params'])
  baseline = configs.is_baseline(config)
  if config.init == 'pytorch' and not baseline:
    # A fourth key of the seed: the three above (and so init='flax') stay.
    params = models.pytorch_init(params, jax.random.fold_in(rng, 3))
  if config.text_model != 'scratch' and not baseline:
    params['text_encoder'] = text.load_pretrained_params(config)
  state = step_lib.create_state(config, model, jax.device_get(params),
                                variables.get('batch_stats', {}), train_rng)
  return jax.device_get(state)  # host numpy: safe to donate device copies


def fit_batch_sizes(config, logger, devices=None) -> Tuple[list, int]:
  """Devices for the global batch, and the evaluation batch for them.

  ``parallel.fit_batches`` over ``devices`` (default: every device of the
  run, all hosts'); a note is logged when some devices stay idle.  The
  config is left as it is.
  """
  devices, eval_batch_size, note = parallel.fit_batches(
      jax.devices() if devices is None else devices, config.batch_size,
      config.eval_batch_size)
  if note:
    logger.write(f'note: {note}')
  return devices, eval_batch_size


def compute_pos_weight(data: data_lib.Data) -> np.ndarray:
  return optim.pos_weight_from_labels(data.train_labels())


def run_eval(runner, state, batches, pos_weight) -> Dict[str, Any]:
  """Probabilities and labels of every real clip, and the mean loss."""
  probs, labels, loss_sum, count = [], [], 0.0, 0.0
  for batch in batches:
    out = runner.eval_step(state, batch, pos_weight)
    mask = out['clip_mask'].astype(bool)
    probs.append(out['probs'][mask])
    labels.append(out['labels'][mask])
    loss_sum += float(out['loss_sum'])
    count += float(out['loss_count'])
  return {'probs': np.concatenate(probs), 'labels': np.concatenate(labels),
          'loss': loss_sum / max(count, 1.0)}


def evaluate_state(ctx, state, thresholds=None):
  """Valid and test metrics of ``state``; thresholds from valid unless given."""
  valid = run_eval(ctx.runner, state,
                   ctx.data.eval_batches('valid', ctx.eval_batch_size),
                   ctx.pos_weight)
  test = run_eval(ctx.runner, state,
                  ctx.data.eval_batches('test', ctx.eval_batch_size),
                  ctx.pos_weight)
  for split, out in (('valid', valid), ('test', test)):
    # Every clip once, whatever the hosts' shards and padding batches.
    if len(out['labels']) != ctx.data.num_examples(split):
      raise RuntimeError(
          f'evaluated {len(out["labels"])} {split} clips, but the split has '
          f'{ctx.data.num_examples(split)}')
  thresholds, values = metrics_lib.evaluate_splits(
      valid, test, ctx.emotions, ctx.metric_set, thresholds)
  values['valid/loss'], values['test/loss'] = valid['loss'], test['loss']
  return thresholds, values


class Context:
  """Everything a run needs, built once: data, model, runner, checkpoints.

  ``config`` is a frozen copy of the given config (a write raises);
  ``eval_batch_size`` is the config's, fitted to the devices.
  """

  def __init__(self, config, workdir: str):
    configs.check(config)  # before any work: bad values fail at once
    self.config = config = ml_collections.FrozenConfigDict(config)
    self.workdir = workdir
    self.data = data_lib.Data(config)  # first: a missing dataset writes nothing
    self.emotions = self.data.emotions()  # checks num_emotions against it
    self.logger = log_lib.RunLogger(workdir)
    self.devices, self.eval_batch_size = fit_batch_sizes(config, self.logger)
    self.runner = parallel.make_runner(config.parallel, self.devices)
    emotion_vectors = None
    if config.model == 'emoembs':
      emotion_vectors, note = self.data.emotion_vectors()
      self.logger.write(note)
    self.model = restore_lib.build_model(
        config, self.devices[0].platform,
        feature_dims=self.data.feature_dims(),
        emotion_vectors=emotion_vectors)
    self.metric_set = self.data.metric_set()  # 'mosei' | 'iemocap' metrics
    self.headline = metrics_lib.headline_metrics(self.metric_set)
    self.ckpts = ckpt_lib.Checkpoints(workdir, config.keep_checkpoints)
    self.pos_weight = None
    self.sample = step_lib.model_inputs(
        self.data.sample_batch(self.eval_batch_size))
    # The state as shapes: the restore target (a resumed run reads no
    # pretrained weights and draws none).
    self.abstract = aot.abstract_state(config, self.model, self.sample)

  def fresh_state(self) -> step_lib.TrainState:
    """Step 0: fresh parameters (the pretrained text encoder) and Adam."""
    return init_state(self.config, self.model, self.sample)

  def host_target(self):
    return self.abstract.to_dict()

  def restored_state(self, state_dict) -> step_lib.TrainState:
    """The state of a restored checkpoint, as host numpy arrays."""
    return self.abstract.from_dict(jax.device_get(state_dict))


@dataclasses.dataclass
class RunState:
  """Where training stands; saved as JSON with every latest checkpoint.

  Attributes:
    pos_weight: the loss's positive weight per emotion, counted once on the
      training labels (kept so that a resumed run uses the same).
    epoch: epochs finished.
    step_in_epoch: steps of the current epoch finished (resume from there).
    steps_per_epoch: steps of an epoch, known after the first one (progress
      bar); None before.
    best_score: ``[valid average F1, -valid loss]`` of the best epoch.
    best_epoch: that epoch (1-based), None before the first.
    bad_epochs: epochs since the best one (early stopping).
    done: training is over (last epoch or early stop).
    epoch_loss_sum, epoch_loss_steps: the current epoch's training loss so
      far (its mean is the epoch's ``train/loss``).
    lr_scale, plateau_best, plateau_bad_epochs: ReduceLROnPlateau's state
      (``optim.Plateau``; ``plateau_patience`` > 0): the learning-rate
      scale (also in the optimizer state), the best validation loss, the
      epochs since it.
  """
  pos_weight: List[float]
  epoch: int = 0
  step_in_epoch: int = 0
  steps_per_epoch: Optional[int] = None
  best_score: Optional[List[float]] = None
  best_epoch: Optional[int] = None
  bad_epochs: int = 0
  done: bool = False
  epoch_loss_sum: float = 0.0
  epoch_loss_steps: int = 0
  lr_scale: float = 1.0
  plateau_best: Optional[float] = None
  plateau_bad_epochs: int = 0

  def to_json(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, saved: Dict[str, Any]) -> 'RunState':
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in saved.items() if k in names})


def restore_or_start(ctx: Context):
  """The latest checkpoint of the work directory, or a fresh start."""
  restored = ctx.ckpts.restore_latest(ctx.host_target())
  if restored is None:
    ctx.pos_weight = compute_pos_weight(ctx.data)
    return ctx.fresh_state(), RunState(pos_weight=ctx.pos_weight.tolist())
  state_dict, saved = restored
  for note in ctx.ckpts.notes:
    ctx.logger.write(f'note: {note}')
  run = RunState.from_json(saved)
  ctx.pos_weight = np.asarray(run.pos_weight, np.float32)
  ctx.logger.write(f'resuming from {ctx.ckpts.latest.directory} at step '
                   f'{int(state_dict["step"])} (epoch {run.epoch + 1}, '
                   f'step {run.step_in_epoch} of the epoch)')
  return ctx.restored_state(state_dict), run


def check_finite(pending: List[Dict[str, Any]], step: int, ctx) -> List[Dict]:
  """Fetch the pending step metrics; raise if any loss is not finite."""
  fetched = [jax.device_get(m) for m in pending]
  for i, m in enumerate(fetched):
    loss = float(m['loss'])
    if not np.isfinite(loss):
      last = ctx.ckpts.latest.latest_step()
      raise NonFiniteLossError(
          f'training loss is {loss} at step {step - len(fetched) + i + 1}; '
          f'stopped. The last good checkpoint (step {last}) in '
          f'{ctx.ckpts.latest.directory} is intact; try a lower --lr or '
          f'--clip_grad 1.0.')
  return fetched


def save_latest(ctx, state, run: RunState) -> None:
  host = ctx.runner.get_state(state)
  ctx.ckpts.save_latest(int(host.step), host.to_dict(), run.to_json())


def train_epoch(ctx, state, run: RunState) -> Any:
  """The rest of one epoch from ``run.step_in_epoch``; updates ``run``."""
  config, epoch = ctx.config, run.epoch
  start = run.step_in_epoch
  total = run.steps_per_epoch or (
      ctx.data.num_examples('train') // config.batch_size)
  bar = log_lib.progress(total, f'epoch {epoch + 1}/{config.epochs}',
                         initial=start, leave=False)
  pending, speed, i = [], log_lib.Throughput(), start
  for i, (batch, last) in enumerate(ctx.data.train_batches(epoch, start),
                                    start + 1):
    state, m = ctx.runner.train_step(state, batch, ctx.pos_weight)
    pending.append(m)
    speed.add(config.batch_size)
    bar.update(1)
    save = i % config.checkpoint_every_steps == 0 and not last
    if save or last or len(pending) >= config.log_every_steps:
      pending = _flush(ctx, pending, run, bar, speed, int(_step(state)))
    if save:
      run.step_in_epoch = i
      save_latest(ctx, state, run)
  bar.close()
  run.steps_per_epoch = i
  return state


def _step(state) -> int:
  step = state.step
  if isinstance(step, jax.Array):
    step = step.addressable_data(0)  # this device's value (pmap: [1] or [])
  return int(np.asarray(step).reshape(-1)[0])


def _flush(ctx, pending, run: RunState, bar, speed, global_step) -> list:
  """NaN check, then log the mean of the pending step metrics."""
  fetched = check_finite(pending, global_step, ctx)
  losses = [float(m['loss']) for m in fetched]
  run.epoch_loss_sum += sum(losses)
  run.epoch_loss_steps += len(losses)
  means = {f'train/{k}': float(np.mean([m[k] for m in fetched]))
           for k in fetched[0]}
  rate = speed.rate()
  ctx.logger.scalars(global_step, {**means, 'train/clips_per_s': rate},
                     epoch=run.epoch + 1)
  bar.set_postfix(loss=f'{means["train/loss"]:.4f}', clips_s=f'{rate:.1f}')
  return []


def is_better(score, best) -> bool:
  """Higher valid average F1; on an exact tie, lower valid loss.

  The tie-break only matters once the validation F1 saturates (the small
  synthetic set reaches 1.0): later, more confident epochs still count.
  """
  return best is None or tuple(score) > tuple(best)


def end_epoch(ctx, state, run: RunState) -> Any:
  """Evaluate, keep the best, step ReduceLROnPlateau, save the latest; sets
  ``run.done`` at the end.  Returns the state (a new one when the learning
  rate was reduced)."""
  config, epoch = ctx.config, run.epoch
  host = ctx.runner.get_state(state)
  thresholds, values = evaluate_state(ctx, state)
  if config.plateau_patience > 0:
    state, host = plateau_step(ctx, state, host, run, values['valid/loss'])
  values['train/loss'] = run.epoch_loss_sum / max(run.epoch_loss_steps, 1)
  score = [values['valid/f1/avg'], -values['valid/loss']]
  improved = is_better(score, run.best_score)
  if improved:
    run.best_score, run.best_epoch, run.bad_epochs = score, epoch + 1, 0
    ctx.ckpts.save_best(int(host.step), host.to_dict(), workdir_lib.to_jsonable({
        'epoch': epoch + 1, 'step': int(host.step), 'score': score[0],
        'emotions': list(ctx.emotions), 'thresholds': thresholds,
        'metrics': values}))
  else:
    run.bad_epochs += 1
  stop = config.early_stop > 0 and run.bad_epochs >= config.early_stop
  run.epoch, run.step_in_epoch = epoch + 1, 0
  run.epoch_loss_sum, run.epoch_loss_steps = 0.0, 0
  run.done = stop or epoch + 1 >= config.epochs
  ctx.ckpts.save_latest(int(host.step), host.to_dict(), run.to_json())
  ctx.logger.scalars(int(host.step), values, epoch=epoch + 1)
  ctx.logger.write(log_lib.table_row(epoch + 1, values, ctx.headline, improved))
  if stop:
    ctx.logger.write(f'early stop: no better valid/f1/avg for '
                     f'{config.early_stop} epochs')
  return state


def plateau_step(ctx, state, host, run: RunState, valid_loss: float):
  """One epoch of ReduceLROnPlateau (``optim.Plateau``) on the validation
  loss; a reduced scale is written into the optimizer state (device and
  host copies).  Returns ``(state, host)``."""
  config = ctx.config
  plateau = optim.Plateau(
      factor=float(config.plateau_factor),
      patience=int(config.plateau_patience), lr=float(config.lr),
      scale=run.lr_scale, best=run.plateau_best,
      bad_epochs=run.plateau_bad_epochs)
  reduced = plateau.step(valid_loss)
  run.lr_scale, run.plateau_best = plateau.scale, plateau.best
  run.plateau_bad_epochs = plateau.bad_epochs
  if reduced:
    host = host.replace(opt_state=optim.set_lr_scale(host.opt_state,
                                                     plateau.scale))
    state = ctx.runner.put_state(host)
    ctx.logger.write(
        f'ReduceLROnPlateau: valid/loss did not improve for more than '
        f'{config.plateau_patience} epochs: learning rate '
        f'{config.lr * plateau.scale:.3g} (x{plateau.scale:.3g})')
  return state, host


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> Dict[str, Any]:
  """Train (or resume) in ``workdir``; returns and writes ``results.json``.

  ``config`` is not changed (the loop works on a frozen copy).
  """
  start_time = time.time()
  check_saved_config(config, workdir)
  ctx = Context(config, workdir)
  if log_lib.is_main():
    workdir_lib.save_config(workdir, ctx.config)
  state, run = restore_or_start(ctx)
  ctx.logger.write(describe(ctx, run))
  state = ctx.runner.put_state(state)
  if not run.done:
    ctx.logger.write(log_lib.table_header(ctx.headline))
  epochs = log_lib.progress(ctx.config.epochs, 'epochs', initial=run.epoch,
                            outer=True)
  while not run.done:
    state = train_epoch(ctx, state, run)
    state = end_epoch(ctx, state, run)
    epochs.update(1)
  epochs.close()
  results = write_results(ctx, run, time.time() - start_time)
  ctx.ckpts.close()
  ctx.logger.close()
  return results


def check_saved_config(config, workdir: str) -> None:
  """A run in a used workdir must fit its checkpoints' shapes."""
  saved = workdir_lib.load_config(workdir)
  if saved is None:
    return
  changes = workdir_lib.shape_changes(saved.to_dict(), config.to_dict(),
                                      config.keys())
  if changes:
    raise ValueError(
        f'{workdir} holds a run whose parameters have other shapes ('
        + '; '.join(changes) + '): use another --workdir, or the saved '
        f'values ({workdir_lib.config_path(workdir)})')


def describe(ctx, run: RunState) -> str:
  c = ctx.config
  return (f'{c.model.upper()} on {c.dataset} ({c.modalities}, '
          f'top_p={c.top_p}); '
          f'{ctx.data.num_examples("train")} training clips, '
          f'batches of {c.batch_size}; '
          f'{ctx.runner.name} over {len(ctx.devices)} device(s) '
          f'({jax.devices()[0].platform}); pos_weight '
          f'{np.round(run.pos_weight, 3).tolist()}')


def git_commit() -> Optional[str]:
  try:
    out = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True,
                         text=True, cwd=Path(__file__).parent, timeout=10)
    return out.stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    return None


def provenance(ctx) -> Dict[str, Any]:
  return {'config': ctx.config.to_dict(),
          'command': shlex.join([sys.executable] + sys.argv),
          'git_commit': git_commit(), 'parallel': ctx.runner.name,
          'num_devices': len(ctx.devices),
          'platform': jax.devices()[0].platform,
          'process_count': jax.process_count()}


def write_results(ctx, run: RunState, seconds: float) -> Dict[str, Any]:
  """``results.json``: provenance, best epoch, thresholds, every metric."""
  best = ctx.ckpts.best_meta()
  results = {**provenance(ctx), 'best_epoch': best['epoch'],
             'best_step': best['step'], 'epochs_run': run.epoch,
             'thresholds': dict(zip(ctx.emotions, best['thresholds'])),
             'pos_weight': dict(zip(ctx.emotions, run.pos_weight)),
             'metrics': best['metrics'], 'seconds_this_run': seconds}
  if log_lib.is_main():
    workdir_lib.write_json_atomic(workdir_lib.path(ctx.workdir, 'results.json'),
                                  results)
    ctx.logger.write(summary(ctx, results))
  return results


def summary(ctx, results, filename: str = 'results.json') -> str:
  m = results['metrics']
  head = ', '.join(f'{s}/{k}/avg {m[f"{s}/{k}/avg"]:.4f}'
                   for s in ('valid', 'test') for k in ctx.headline)
  return (f'best epoch {results["best_epoch"]}: {head}\n'
          f'{log_lib.format_metrics(m, "test/")}\n'
          f'results: {workdir_lib.path(ctx.workdir, filename)}')


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Evaluate the work directory's best checkpoint on valid and test.

  Writes and returns ``eval_results.json``; ``config`` is not changed.
  """
  ctx = Context(config, workdir)
  restored = ctx.ckpts.restore_best(ctx.host_target())
  if restored is None:
    raise FileNotFoundError(
        f'no best checkpoint in {ctx.ckpts.best.directory}; train first '
        '(the same command without --eval_only)')
  state_dict, best = restored
  # The training labels give the run's positive weights again (the latest
  # checkpoint, which also holds them, may be gone or broken).
  ctx.pos_weight = compute_pos_weight(ctx.data)
  state = ctx.runner.put_state(ctx.restored_state(state_dict))
  thresholds, values = evaluate_state(ctx, state)
  results = {**provenance(ctx), 'best_epoch': best['epoch'],
             'best_step': best['step'],
             'thresholds': dict(zip(ctx.emotions, thresholds.tolist())),
             'metrics': values}
  if log_lib.is_main():
    workdir_lib.write_json_atomic(
        workdir_lib.path(workdir, 'eval_results.json'), results)
    ctx.logger.write(summary(ctx, results, 'eval_results.json') + '\n' +
                     log_lib.format_metrics(values, 'valid/'))
  ctx.ckpts.close()
  return results
