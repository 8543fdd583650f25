"""Optimiser and loss of the paper's training.

Adam at ``lr`` for every parameter except the text model's (the encoder and
the text head, ``models.TEXT_GROUP``), which train at ``lr / text_lr_factor``
(the authors: 5e-5 and 5e-6).  Optional global-norm
clipping (``clip_grad`` > 0) on the whole gradient before Adam, and weight
decay (``weight_decay`` > 0) added to the gradient before Adam's moments as
``torch.optim.Adam(weight_decay=...)`` does (an L2 term, not AdamW).

Loss: binary cross-entropy on logits with a per-emotion positive weight
``pos_weight = negatives / positives`` counted once on the training split,
``-(w * y * log s(x) + (1 - y) * log(1 - s(x)))``, averaged over real clips
and emotions (``torch.nn.BCEWithLogitsLoss(pos_weight=...)``).

Axis letters: B clips of one batch, E emotions.
"""

from typing import Any, Callable, Iterable

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
  return tx


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
