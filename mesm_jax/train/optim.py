"""Optimiser and loss of the paper's training.

Adam at ``lr`` for every parameter except the text model's (the encoder and
the text head, ``models.TEXT_GROUP``), which train at ``lr / text_lr_factor``
(the authors: 5e-5 and 5e-6).  Optional global-norm
clipping (``clip_grad`` > 0) on the whole gradient before Adam, and weight
decay (``weight_decay`` > 0) added to the gradient before Adam's moments as
``torch.optim.Adam(weight_decay=...)`` does (an L2 term, not AdamW).

ReduceLROnPlateau (``plateau_patience`` > 0; the baselines EmoEmbs and MulT):
Adam's update is multiplied by a learning-rate scale held in the optimizer
state (``optax.inject_hyperparams(optax.scale)``, the last stage of the
chain: a checkpoint keeps it), which equals scaling the learning rate.
``Plateau`` decides the scale once per epoch from the validation loss, with
``torch.optim.lr_scheduler.ReduceLROnPlateau``'s rules (mode 'min',
relative threshold 1e-4, no cooldown, min_lr 0, eps 1e-8); the loop keeps
its counters in the run state and writes the scale with ``set_lr_scale``.
Off (no extra stage, the optimizer state as before) for FE2E / MESM.

Loss: binary cross-entropy on logits with a per-emotion positive weight
``pos_weight = negatives / positives`` counted once on the training split,
``-(w * y * log s(x) + (1 - y) * log(1 - s(x)))``, averaged over real clips
and emotions (``torch.nn.BCEWithLogitsLoss(pos_weight=...)``).

Axis letters: B clips of one batch, E emotions.
"""

from typing import Any, Callable, Iterable

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mesm_jax import models

# The groups of ``models.param_labels``: the text model, everything else.
TEXT, DEFAULT = 'text', 'default'


def _adam(lr: float, weight_decay: float) -> optax.GradientTransformation:
  parts = []
  if weight_decay > 0:
    parts.append(optax.add_decayed_weights(weight_decay))
  parts.append(optax.adam(lr))
  return optax.chain(*parts)


def make_optimizer(config, params: Any) -> optax.GradientTransformation:
  """Adam with the text group at ``lr / text_lr_factor``; optional clipping."""
  if config.text_lr_factor <= 0:
    raise ValueError(f'text_lr_factor must be > 0, got {config.text_lr_factor}')
  groups = {
      DEFAULT: _adam(config.lr, config.weight_decay),
      TEXT: _adam(config.lr / config.text_lr_factor, config.weight_decay),
  }
  tx = optax.multi_transform(groups, models.param_labels(params))
  if config.clip_grad > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.clip_grad), tx)
  if config.get('plateau_patience', 0) > 0:
    tx = optax.chain(tx, optax.inject_hyperparams(optax.scale)(
        step_size=1.0))
  return tx


def _is_scale(state) -> bool:
  """The state of the ``inject_hyperparams(optax.scale)`` stage."""
  return 'step_size' in (getattr(state, 'hyperparams', None) or {})


def set_lr_scale(opt_state, scale: float):
  """``opt_state`` of ``make_optimizer`` (with ``plateau_patience`` > 0)
  with its learning-rate scale set to ``scale`` (host or device arrays; the
  scale keeps their type, shape and dtype)."""
  *rest, last = opt_state
  if not _is_scale(last):
    raise ValueError('the optimizer has no learning-rate scale: '
                     'plateau_patience is 0')
  old = last.hyperparams['step_size']
  new = jnp.full_like(old, scale) if isinstance(old, jax.Array) else (
      np.full_like(np.asarray(old), scale))
  hyper = {**last.hyperparams, 'step_size': new}
  return type(opt_state)((*rest, last._replace(hyperparams=hyper)))


def lr_scale_of(opt_state) -> Optional[float]:
  """The learning-rate scale of ``opt_state`` (None without one)."""
  last = opt_state[-1] if isinstance(opt_state, tuple) and opt_state else None
  if not _is_scale(last):
    return None
  return float(np.asarray(jax.device_get(
      last.hyperparams['step_size'])).reshape(-1)[0])


@dataclasses.dataclass
class Plateau:
  """torch's ReduceLROnPlateau(mode='min', factor, patience,
  threshold=1e-4, threshold_mode='rel', cooldown=0, min_lr=0, eps=1e-8)
  on a learning rate ``lr * scale``.

  ``step(value)`` once per epoch with the validation loss: a value below
  ``best * (1 - threshold)`` is the new best; otherwise one more bad epoch,
  and after more than ``patience`` of them the scale is multiplied by
  ``factor`` (unless the learning rate would change by 1e-8 or less) and the
  count restarts.  Its fields are plain numbers (JSON in the run state).
  """
  factor: float
  patience: int
  lr: float
  scale: float = 1.0
  best: Optional[float] = None          # None: torch's inf (no epoch yet)
  bad_epochs: int = 0
  threshold: float = 1e-4
  eps: float = 1e-8

  def step(self, value: float) -> bool:
    """Takes one epoch's validation loss; True when the scale changed."""
    value = float(value)
    best = math.inf if self.best is None else self.best
    if value < best * (1.0 - self.threshold):
      self.best, self.bad_epochs = value, 0
    else:
      self.bad_epochs += 1
    if self.bad_epochs > self.patience:
      self.bad_epochs = 0
      old = self.lr * self.scale
      if old - old * self.factor > self.eps:
        self.scale *= self.factor
        return True
    return False


def pos_weight_from_labels(labels: Iterable[np.ndarray]) -> np.ndarray:
  """negatives / positives per emotion from training label batches [B, E].

  An emotion with no positive training clip gets weight 1 (no re-weighting)
  instead of a division by zero.
  """
  pos = neg = 0
  for y in labels:
    y = np.asarray(y) > 0.5
    pos = pos + y.sum(axis=0)
    neg = neg + (~y).sum(axis=0)
  pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
  weight = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
  return weight.astype(np.float32)


def weighted_bce(logits: jax.Array, labels: jax.Array,
                 pos_weight: jax.Array) -> jax.Array:
  """Element-wise BCE on logits with positive weight [B, E] (float32)."""
  logits = logits.astype(jnp.float32)
  log_p = jax.nn.log_sigmoid(logits)
  log_not_p = jax.nn.log_sigmoid(-logits)
  return -(pos_weight * labels * log_p + (1.0 - labels) * log_not_p)


def masked_loss_sum(logits, labels, pos_weight, clip_mask):
  """Sum of the BCE over real clips and emotions, and the element count."""
  per_clip = weighted_bce(logits, labels, pos_weight)
  mask = clip_mask.astype(jnp.float32)[:, None]
  total = jnp.sum(per_clip * mask)
  count = jnp.sum(mask) * logits.shape[-1]
  return total, count


LossFn = Callable[..., jax.Array]
