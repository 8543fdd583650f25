"""One training step and one evaluation step, written per device.

The step functions see one device's share of the global batch and use named
collectives over ``axis_name``: gradients, metrics and BatchNorm statistics are
averaged with ``lax.pmean`` (the model's masked BatchNorm itself ``psum``s its
batch statistics over the same axis, so 8 devices x 1 clip compute what
1 device x 8 clips does).  The same per-device function is mapped over the
local devices either by ``jax.pmap`` (``config.parallel='pmap'``, the default)
or by ``jax.shard_map`` over a one-axis mesh (``'shard_map'``); see
``parallel.py``.

Axis letters: B clips on one device, E emotions.
"""

import functools
from typing import Any, Dict, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax import lax

from mesm_jax.train import optim

AXIS = 'batch'
MODEL_KEYS = ('text_ids', 'text_mask', 'faces', 'face_mask', 'spec',
              'spec_mask', 'labels', 'clip_mask',
              # the baselines' feature sequences (input_pipeline)
              'text_feats', 'text_feats_mask', 'audio_feats',
              'audio_feats_mask', 'vision_feats', 'vision_feats_mask')


class TrainState(train_state.TrainState):
  """Flax TrainState plus BatchNorm statistics and the base dropout key."""
  batch_stats: Any = None
  rng: jax.Array = None

  def to_dict(self) -> Dict[str, Any]:
    """The pytree that checkpoints store (no functions)."""
    return {'step': self.step, 'params': self.params,
            'batch_stats': self.batch_stats, 'opt_state': self.opt_state,
            'rng': self.rng}

  def from_dict(self, d: Dict[str, Any]) -> 'TrainState':
    return self.replace(**d)


def create_state(config, model, params, batch_stats, rng) -> TrainState:
  """Step 0 of ``model`` at ``params``: Adam as ``config`` says
  (``optim.make_optimizer``), the BatchNorm statistics, the dropout key."""
  state = TrainState.create(apply_fn=model.apply, params=params,
                            tx=optim.make_optimizer(config, params),
                            batch_stats=batch_stats, rng=rng)
  return state.replace(step=np.zeros((), np.int32))


def _variables(state: TrainState, params: Any) -> Dict[str, Any]:
  variables = {'params': params}
  if state.batch_stats:
    variables['batch_stats'] = state.batch_stats
  return variables


def step_rng(state: TrainState, axis_name: str = AXIS) -> jax.Array:
  """Dropout key of this device and step: fold in the step, then the device."""
  key = jax.random.fold_in(state.rng, state.step)
  return jax.random.fold_in(key, lax.axis_index(axis_name))


def train_step(state: TrainState, batch: Dict[str, jax.Array],
               pos_weight: jax.Array, axis_name: str = AXIS
               ) -> Tuple[TrainState, Dict[str, jax.Array]]:
  """Per-device step: loss, pmean'd gradients, Adam update, metrics."""
  n_dev = lax.psum(1, axis_name)

  def loss_fn(params):
    out, new_vars = state.apply_fn(
        _variables(state, params), batch, train=True,
        rngs={'dropout': step_rng(state, axis_name)}, mutable=['batch_stats'])
    total, count = optim.masked_loss_sum(out['logits'], batch['labels'],
                                         pos_weight, batch['clip_mask'])
    # Mean over the GLOBAL batch, scaled so that pmean of the gradients is the
    # gradient of that mean even when devices hold different clip counts.
    global_count = jnp.maximum(lax.psum(count, axis_name), 1.0)
    return total * n_dev / global_count, (out, new_vars)

  grads, (out, new_vars) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = lax.pmean(grads, axis_name)
  batch_stats = lax.pmean(new_vars.get('batch_stats', {}), axis_name)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  total, count = optim.masked_loss_sum(out['logits'], batch['labels'],
                                       pos_weight, batch['clip_mask'])
  metrics = {
      'loss': lax.psum(total, axis_name) /
              jnp.maximum(lax.psum(count, axis_name), 1.0),
      'grad_norm': optax.tree.norm(grads),
      'param_norm': optax.tree.norm(new_state.params),
      **_model_stats(out, axis_name),
  }
  return new_state, metrics


def _model_stats(out: Dict[str, Any], axis_name: str) -> Dict[str, jax.Array]:
  """The model's scalar statistics (kept fractions, ...), device-averaged."""
  stats = out.get('stats') or {}
  flat = flax.traverse_util.flatten_dict(stats, sep='/') if isinstance(
      stats, dict) else {}
  return {f'model/{k}': lax.pmean(jnp.mean(v.astype(jnp.float32)), axis_name)
          for k, v in flat.items() if hasattr(v, 'dtype')}


def eval_step(state: TrainState, batch: Dict[str, jax.Array],
              pos_weight: jax.Array, axis_name: str = AXIS
              ) -> Dict[str, jax.Array]:
  """Per-device evaluation: probabilities per clip and the summed loss."""
  out = state.apply_fn(_variables(state, state.params), batch, train=False)
  logits = out['logits'].astype(jnp.float32)
  total, count = optim.masked_loss_sum(logits, batch['labels'], pos_weight,
                                       batch['clip_mask'])
  return {
      'probs': jax.nn.sigmoid(logits),
      'labels': batch['labels'],
      'clip_mask': batch['clip_mask'],
      'loss_sum': lax.psum(total, axis_name),
      'loss_count': lax.psum(count, axis_name),
  }


def model_inputs(batch: Dict[str, Any]) -> Dict[str, Any]:
  """The numeric keys of the batch contract (drops ``clip_id`` strings)."""
  return {k: batch[k] for k in MODEL_KEYS if k in batch}


per_device_train_step = functools.partial(train_step, axis_name=AXIS)
per_device_eval_step = functools.partial(eval_step, axis_name=AXIS)
