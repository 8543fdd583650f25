"""A run's train and eval steps compiled ahead of time, for any devices.

``compile_steps(config, devices)`` builds what the training loop builds for
``config`` (the model for the devices' platform, the Adam state, the runner
of ``config.parallel``) from shapes alone, without data, pretrained weights
or the devices themselves, and compiles the loop's two steps for them.  The
devices may be abstract: ``jax.experimental.topologies`` describes a Cloud
TPU slice on a machine without one (with ``libtpu`` installed), so a CPU
host can tell whether a run lowers and compiles for a TPU, how much HBM each
chip needs and what XLA counts (``experiments/plan.py``).

Shapes are the largest of a run: every clip of a batch at the largest length
bucket (``max_frames`` face frames, ``max_chunks`` spectrogram chunks).

Axis letters: B clips, F frames, C chunks, L tokens, E emotions.
"""

import dataclasses
import functools
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp

from mesm_jax import configs
from mesm_jax import models
from mesm_jax.train import parallel
from mesm_jax.train import step as step_lib

def abstract_state(config, model, sample=None) -> step_lib.TrainState:
  """The run's fresh ``TrainState`` as shapes (``loop.init_state``'s
  structure: ``models.abstract_variables`` of ``sample`` and Adam's state
  over them; no weights are drawn or read): a restore target, and what is
  compiled."""
  variables = models.abstract_variables(config, model, sample)

  def fresh(params, batch_stats):
    return step_lib.create_state(config, model, dict(params), batch_stats,
                                 jax.random.PRNGKey(0))
  return jax.eval_shape(fresh, variables['params'],
                        variables.get('batch_stats', {}))


@dataclasses.dataclass
class CompiledSteps:
  """The two compiled steps of a run and what they were compiled for.

  Attributes:
    train, eval: ``jax.stages.Compiled`` of the train and eval step.
    devices: the devices the steps run on (all hosts').
    train_batch, eval_batch: global batches (clips) they were compiled for.
    frames, chunks: the clip shape (largest bucket by default).
    runner: the runner's name ('pmap' or 'shard_map').
  """
  train: Any
  eval: Any
  devices: list
  train_batch: int
  eval_batch: int
  frames: int
  chunks: int
  runner: str

  @property
  def per_device_batch(self) -> int:
    return self.train_batch // len(self.devices)


def compile_steps(config, devices: Sequence[jax.Device], *,
                  train_batch: Optional[int] = None,
                  eval_batch: Optional[int] = None,
                  text_encoder=None, steps: Sequence[str] = ('train', 'eval'),
                  frames: Optional[int] = None,
                  chunks: Optional[int] = None) -> CompiledSteps:
  """Lower and compile the loop's steps of ``config`` for ``devices``.

  Args:
    config: a FE2E / MESM run config (``flags.parse`` / ``get_config``).
    devices: the devices to run on, all hosts' (``parallel.fit_batches``
      picks from them as the loop does: the most that divide the batch).
    train_batch, eval_batch: global batches; default the config's
      (``batch_size``; ``eval_batch_size`` rounded up to the devices).
    text_encoder: a module to use instead of ``config.text_model``'s (e.g.
      one of the same shape when its checkpoint is not on this machine).
    steps: which of 'train' and 'eval' to compile (the other is None).
    frames, chunks: the clip shape; default the largest bucket.

  Raises:
    ValueError: a baseline config (they train on feature sequences).
    Whatever lowering or XLA raises when the program does not lower or
    compile (e.g. it does not fit the device's memory).
  """
  configs.check(config)
  if configs.is_baseline(config):
    raise ValueError(f'{config.model} trains on feature sequences; the '
                     'ahead-of-time compilation covers FE2E and MESM')
  train_batch = train_batch or config.batch_size
  used, fitted_eval, _ = parallel.fit_batches(
      devices, train_batch, eval_batch or config.eval_batch_size)
  eval_batch = -(-(eval_batch or fitted_eval) // len(used)) * len(used)
  model = models.build_model(config, text_encoder=text_encoder,
                             axis_name=step_lib.AXIS,
                             platform=used[0].platform)
  runner = parallel.make_runner(config.parallel, used)
  state = abstract_state(config, model)
  pos_weight = jax.ShapeDtypeStruct((config.num_emotions,), jnp.float32)
  shape = functools.partial(models.batch_spec, config, frames=frames,
                            chunks=chunks)
  compiled = {}
  for step, batch in (('train', train_batch), ('eval', eval_batch)):
    compiled[step] = (runner.lower(step, state, shape(batch), pos_weight)
                      .compile() if step in steps else None)
  spec = shape(1)
  return CompiledSteps(
      train=compiled['train'], eval=compiled['eval'], devices=used,
      train_batch=train_batch, eval_batch=eval_batch,
      frames=spec['faces'].shape[1], chunks=spec['spec'].shape[1],
      runner=runner.name)


def memory(compiled) -> Dict[str, int]:
  """Bytes a compiled step needs per device, as XLA planned them.

  ``arguments`` (the state and the batch share), ``outputs``, ``aliased``
  (outputs written over donated arguments: the state), ``temporaries``
  (the peak of the step's scratch), ``code`` and ``total`` = arguments +
  outputs - aliased + temporaries + code, what must fit in device memory.
  """
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = {'arguments': m.argument_size_in_bytes,
         'outputs': m.output_size_in_bytes,
         'aliased': m.alias_size_in_bytes,
         'temporaries': m.temp_size_in_bytes,
         'code': m.generated_code_size_in_bytes}
  out = {k: int(v) for k, v in out.items()}
  out['total'] = (out['arguments'] + out['outputs'] - out['aliased']
                  + out['temporaries'] + out['code'])
  return out


def cost(compiled) -> Dict[str, float]:
  """XLA's counts for one device's program: ``flops`` (a multiply-add is
  2), ``bytes_accessed`` and the backend cost model's ``optimal_seconds``
  (absent where the backend gives none)."""
  c = compiled.cost_analysis()
  if isinstance(c, (list, tuple)):  # older JAX: one dict per computation
    c = c[0] if c else {}
  c = dict(c or {})
  out = {'flops': float(c.get('flops', 0.0)),
         'bytes_accessed': float(c.get('bytes accessed', 0.0))}
  if 'optimal_seconds' in c:
    out['optimal_seconds'] = float(c['optimal_seconds'])
  return out
