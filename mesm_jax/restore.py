"""A trained work directory as a model: its config, model and weights.

``restore(workdir, checkpoint)`` is what inference needs and nothing more:
the saved config (``config.json``), the model built from it
(``models.build_model``), and the parameters and BatchNorm statistics of the
best (or latest) checkpoint, restored into a target of shapes alone
(``models.abstract_variables``): no weight is drawn, no pretrained text
encoder is read or downloaded, no optimizer state is built or read.  The
training loop restores its whole state (optimizer included) into an abstract
target the same way (``mesm_jax.train.loop``).
"""

import dataclasses
from typing import Any, Dict, List, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mesm_jax import configs
from mesm_jax import models
from mesm_jax.train import checkpoint as ckpt_lib
from mesm_jax.train import workdir as workdir_lib

CHECKPOINTS = ('best', 'latest')
AXIS = 'batch'  # the training step's axis, over which BatchNorm averages


def build_model(config, platform: Optional[str] = None,
                feature_dims=None, emotion_vectors=None) -> nn.Module:
  """The run's model as training builds it: BatchNorm statistics shared
  over the step's axis, compiled for ``platform`` (None: this machine's);
  a baseline at its data's ``feature_dims`` (EmoEmbs with its
  ``emotion_vectors``)."""
  return models.build_model(config, axis_name=AXIS, platform=platform,
                            feature_dims=feature_dims,
                            emotion_vectors=emotion_vectors)


@dataclasses.dataclass
class Restored:
  """A work directory's model and weights.

  Attributes:
    config: the saved config (frozen).
    model: the unbound Linen model.
    variables: ``{'params', 'batch_stats'}`` as host numpy arrays.
    kind: 'best' or 'latest'.
    step: the training step the weights are from.
    meta: the checkpoint's JSON (best: epoch, thresholds, metrics, emotions;
      latest: where training stood).
    best_meta: the best checkpoint's JSON (None without one).
    notes: checkpoints skipped as unreadable.
  """
  config: ml_collections.FrozenConfigDict
  model: nn.Module
  variables: Dict[str, Any]
  kind: str
  step: int
  meta: Dict[str, Any]
  best_meta: Optional[Dict[str, Any]]
  notes: List[str]


def restore(workdir: str, checkpoint: str = 'best') -> Restored:
  """The model and weights of ``workdir``'s ``checkpoint`` ('best' or
  'latest').

  Raises:
    FileNotFoundError: no saved config, or no checkpoint of that kind.
    ValueError: an unknown ``checkpoint``; a baseline's workdir (feature
      sequences, not video: predict and the attention maps do not apply).
    checkpoint.CheckpointError: checkpoints exist but none can be read.
  """
  if checkpoint not in CHECKPOINTS:
    raise ValueError(f'checkpoint must be one of {CHECKPOINTS}, got '
                     f'{checkpoint!r}')
  config = workdir_lib.load_config(workdir)
  if config is None:
    raise FileNotFoundError(
        f'no saved config {workdir_lib.config_path(workdir)}: not a training '
        'work directory (a run writes it when it starts)')
  if configs.is_baseline(config):
    raise ValueError(
        f'{workdir} trained the baseline {config.model!r}, which reads '
        'hand-crafted feature sequences (features_e2e), not video: predict '
        f'runs the end-to-end models {configs.END_TO_END} only')
  root = workdir_lib.path(workdir, 'checkpoints', checkpoint)
  if not root.is_dir():  # before Checkpoints(), which creates folders
    raise FileNotFoundError(f'no {checkpoint} checkpoint in {root}; train '
                            'first')
  model = build_model(config)
  target = models.abstract_variables(config, model)
  target = {'params': target['params'],
            'batch_stats': target.get('batch_stats', {}),
            'step': jax.ShapeDtypeStruct((), jnp.int32)}
  ckpts = ckpt_lib.Checkpoints(workdir)
  try:
    restored = ckpts.restore_part(checkpoint, target)
    if restored is None:
      raise FileNotFoundError(f'no {checkpoint} checkpoint in {root}; train '
                              'first')
    state, meta = restored
    best = ckpts.best_meta()
    notes = list(ckpts.notes)
  finally:
    ckpts.close()
  return Restored(
      config=ml_collections.FrozenConfigDict(config), model=model,
      variables={'params': state['params'],
                 'batch_stats': state['batch_stats']},
      kind=checkpoint, step=int(state['step']), meta=meta, best_meta=best,
      notes=notes)
