"""Mapping the per-device steps over devices: ``jax.pmap`` or ``jax.shard_map``.

Both runners take the same host-local numpy batches [B_host, ...] and the
same host-side ``TrainState``, and give back the same numbers:

* ``PmapRunner``: the state is replicated with a leading device axis, the
  batch reshaped to [D, B_host / D, ...] (the flax ImageNet example's layout).
  Across hosts ``jax.pmap`` is given the devices of every host (as its
  ``devices`` argument requires): its collectives then span all hosts.
* ``ShardMapRunner``: one global jitted function over a ``('batch',)`` mesh;
  the state is replicated (``P()``), the batch sharded along its first axis
  (``P('batch')``), assembled from each host's part with
  ``jax.make_array_from_process_local_data``.

Multi-host: a result of a step is a global array over every host's devices;
only this host's part is read (``_first``), and per-clip evaluation outputs
are gathered from all hosts (``_gather_hosts``).

Axis letters: D local devices, B clips.
"""

from typing import Any, Dict, Sequence, Tuple

import flax.jax_utils
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mesm_jax.train import step as step_lib

AXIS = step_lib.AXIS


def _host(x: Any) -> np.ndarray:
  return np.asarray(jax.device_get(x))


def _first(x: Any) -> Any:
  """The first entry along the device axis of a pmap result.

  Read from this host's first device alone: ``x[0]`` would compile and run a
  gather over every device of the array, with collectives between them (over
  gloo between CPU processes it was seen to hang before a checkpoint).
  """
  if not isinstance(x, jax.Array):
    return x[0]
  shard = x.addressable_data(0)
  return shard[0] if shard.ndim == x.ndim else shard  # pmap: [1, ...] or [...]


class PmapRunner:
  """``jax.pmap`` over ``devices`` (the same devices of every host)."""

  name = 'pmap'

  def __init__(self, devices: Sequence[jax.Device]):
    self.devices = list(devices)
    self.local_devices = [d for d in self.devices
                          if d.process_index == jax.process_index()]
    self.num_local = len(self.local_devices)
    self._train = jax.pmap(step_lib.per_device_train_step, axis_name=AXIS,
                           in_axes=(0, 0, None), devices=self.devices,
                           donate_argnums=(0,))
    self._eval = jax.pmap(step_lib.per_device_eval_step, axis_name=AXIS,
                          in_axes=(0, 0, None), devices=self.devices)

  def put_state(self, state):
    # The axis name matches the sharding of pmap outputs: no recompilation.
    return flax.jax_utils.replicate(state, self.local_devices,
                                    axis_name=AXIS)

  def get_state(self, state):
    """The first replica, as host numpy arrays."""
    return jax.device_get(jax.tree.map(_first, state))

  def put_batch(self, batch: Dict[str, np.ndarray]):
    d = self.num_local

    def split(x):
      return x.reshape((d, _per_device(x.shape[0], d)) + x.shape[1:])
    return jax.tree.map(split, step_lib.model_inputs(batch))

  def train_step(self, state, batch, pos_weight):
    state, metrics = self._train(state, self.put_batch(batch), pos_weight)
    return state, jax.tree.map(_first, metrics)

  def lower(self, step: str, state, batch, pos_weight):
    """The train or eval step lowered for abstract inputs (ahead of time).

    Args:
      step: 'train' or 'eval'.
      state: the host-side state with ``jax.ShapeDtypeStruct`` leaves.
      batch: the global batch [B, ...] as ``ShapeDtypeStruct``s.
      pos_weight: ``ShapeDtypeStruct`` [E].
    Every device of the runner (all hosts') gets B / D clips, as in a run.
    """
    d = len(self.devices)
    stack = lambda x: jax.ShapeDtypeStruct((d,) + x.shape, x.dtype)
    split = lambda x: jax.ShapeDtypeStruct(
        (d, _per_device(x.shape[0], d)) + x.shape[1:], x.dtype)
    fn = self._train if step == 'train' else self._eval
    return fn.lower(jax.tree.map(stack, state),
                    jax.tree.map(split, step_lib.model_inputs(batch)),
                    pos_weight)

  def eval_step(self, state, batch, pos_weight) -> Dict[str, np.ndarray]:
    """Every host's clips, host by host (the devices' order), and the loss."""
    out = self._eval(state, self.put_batch(batch), pos_weight)
    per_clip = _gather_hosts({k: out[k] for k in
                              ('probs', 'labels', 'clip_mask')})
    per_clip = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]),
                            per_clip)
    per_clip['loss_sum'] = _host(_first(out['loss_sum']))
    per_clip['loss_count'] = _host(_first(out['loss_count']))
    return per_clip


class ShardMapRunner:
  """``jax.shard_map`` of the same per-device functions over a 1-axis mesh."""

  name = 'shard_map'

  def __init__(self, devices: Sequence[jax.Device]):
    self.devices = list(devices)
    self.num_local = len([d for d in self.devices
                          if d.process_index == jax.process_index()])
    self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
    self.replicated = NamedSharding(self.mesh, P())
    self.sharded = NamedSharding(self.mesh, P(AXIS))
    # check_vma=False: the per-device code is pmap-style.  With type-checked
    # replication, the gradient of a replicated parameter would come out
    # already summed over devices, and the step's pmean would not be a mean.
    train = jax.shard_map(step_lib.per_device_train_step, mesh=self.mesh,
                          in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()),
                          check_vma=False)
    self._train = jax.jit(train, donate_argnums=(0,))
    evaluate = jax.shard_map(
        step_lib.per_device_eval_step, mesh=self.mesh,
        in_specs=(P(), P(AXIS), P()),
        out_specs={'probs': P(AXIS), 'labels': P(AXIS), 'clip_mask': P(AXIS),
                   'loss_sum': P(), 'loss_count': P()}, check_vma=False)
    self._eval = jax.jit(evaluate)

  def put_state(self, state):
    return jax.device_put(state, self.replicated)

  def get_state(self, state):
    return jax.device_get(state)

  def put_batch(self, batch: Dict[str, np.ndarray]):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.sharded, x),
        step_lib.model_inputs(batch))

  def train_step(self, state, batch, pos_weight):
    return self._train(state, self.put_batch(batch), pos_weight)

  def lower(self, step: str, state, batch, pos_weight):
    """As ``PmapRunner.lower``: the state replicated, the batch sharded."""
    _per_device(jax.tree.leaves(batch)[0].shape[0], len(self.devices))
    put = lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                   sharding=sharding)
    fn = self._train if step == 'train' else self._eval
    return fn.lower(
        jax.tree.map(lambda x: put(x, self.replicated), state),
        jax.tree.map(lambda x: put(x, self.sharded),
                     step_lib.model_inputs(batch)),
        put(pos_weight, self.replicated))

  def eval_step(self, state, batch, pos_weight) -> Dict[str, np.ndarray]:
    out = self._eval(state, self.put_batch(batch), pos_weight)
    per_clip = _gather_hosts({k: out[k] for k in
                              ('probs', 'labels', 'clip_mask')})
    per_clip['loss_sum'] = _host(out['loss_sum'])
    per_clip['loss_count'] = _host(out['loss_count'])
    return per_clip


def _per_device(clips: int, devices: int) -> int:
  if clips % devices:
    raise ValueError(f'batch of {clips} clips does not split over {devices} '
                     'devices')
  return clips // devices


def _gather_hosts(tree):
  """Global arrays (batch axis over every host's devices) as host numpy."""
  if jax.process_count() == 1:
    return jax.tree.map(_host, tree)
  return jax.tree.map(np.asarray,
                      multihost_utils.process_allgather(tree, tiled=True))


RUNNERS = {'pmap': PmapRunner, 'shard_map': ShardMapRunner}


def pick_devices(devices: Sequence[jax.Device], per_host_batch: int,
                 max_devices: int = 0) -> list:
  """Of ``devices``, the ones a batch of ``per_host_batch`` clips per host
  runs on: on every host (``process_index``) its first n devices, n the
  most that divide the per-host batch (capped by ``max_devices`` > 0),
  listed host by host (the same list on every host, as both ``jax.pmap``
  and a global mesh need).

  The paper's MESM batch of 2 on an 8-chip TPU host uses 2 chips (the
  caller logs a note).  ``devices`` may be abstract (a TPU slice compiled
  for on another machine, ``mesm_jax.train.aot``).
  """
  hosts = sorted({d.process_index for d in devices})
  by_host = {p: [d for d in devices if d.process_index == p] for p in hosts}
  local = min(len(ds) for ds in by_host.values())
  n = min(local, max_devices or local, per_host_batch)
  while per_host_batch % n:
    n -= 1
  return [d for p in hosts for d in by_host[p][:n]]


def fit_batches(devices: Sequence[jax.Device], batch_size: int,
                eval_batch_size: int) -> Tuple[list, int, str]:
  """Devices for a global batch, and the evaluation batch fitted to them.

  Args:
    devices: every device of the run, all hosts' (or an abstract slice's).
    batch_size: the global training batch (clips over all hosts).
    eval_batch_size: the configured global evaluation batch.

  Returns:
    The devices the step runs on (``pick_devices`` of the per-host batch),
    ``eval_batch_size`` rounded up to a multiple of their number (every
    device gets the same number of clips), and a note when some devices
    stay idle ('' otherwise).
  """
  hosts = len({d.process_index for d in devices})
  if batch_size % hosts:
    raise ValueError(f'batch_size {batch_size} must be divisible by the '
                     f'{hosts} processes')
  used = pick_devices(devices, batch_size // hosts)
  per_host, local = len(used) // hosts, len(devices) // hosts
  note = (f'global batch {batch_size} uses {per_host} of {local} local '
          'devices per host' if per_host < local else '')
  return used, -(-eval_batch_size // len(used)) * len(used), note


def make_runner(parallel: str, devices: Sequence[jax.Device]):
  if parallel not in RUNNERS:
    raise ValueError(f'config.parallel must be one of {sorted(RUNNERS)}, '
                     f'got {parallel!r}')
  return RUNNERS[parallel](devices)
