"""Which accelerators this machine has, asked before JAX starts a backend.

``cloud_tpu_chips()`` counts the TPU chips attached to a Cloud TPU VM (jax's
own detection, from the PCI devices).  ``leave_out_absent_tpu()``: with
``libtpu`` installed (the ``dev`` and ``tpu`` extras, to compile for TPU
slices on any machine) but no TPU chip here, JAX would still start its TPU
backend first and libtpu would print five lines of warnings about
``TPU_ACCELERATOR_TYPE`` and ``TPU_WORKER_HOSTNAMES`` before falling back;
the entry points call it to leave the TPU backend out instead (an explicit
``JAX_PLATFORMS`` is kept as it is).
"""

import os


def cloud_tpu_chips() -> int:
  """TPU chips attached to this machine (a Cloud TPU VM); 0 elsewhere."""
  try:
    # pylint: disable=g-import-not-at-top
    from jax._src import hardware_utils
    return int(hardware_utils.num_available_tpu_chips_and_device_id()[0])
  except (ImportError, AttributeError, OSError, TypeError, IndexError):
    return 0  # another jax layout: the environment decides (JAX_PLATFORMS)


def leave_out_absent_tpu() -> bool:
  """Drops JAX's TPU backend before it starts when no chip is attached;
  True when it did.  Call before anything touches a device."""
  if os.environ.get('JAX_PLATFORMS') or cloud_tpu_chips():
    return False
  try:
    # pylint: disable=g-import-not-at-top,protected-access
    import dataclasses
    from jax._src import xla_bridge
    registration = xla_bridge._backend_factories.get('tpu')
    if registration is None or xla_bridge.backends_are_initialized():
      return False
    # The platform stays known (lowering rules are registered for it); its
    # backend fails at once, quietly, as on any machine without libtpu.
    xla_bridge._backend_factories['tpu'] = dataclasses.replace(
        registration, factory=_no_tpu, fail_quietly=True)
    return True
  except (ImportError, AttributeError, TypeError):
    return False


def _no_tpu(*_, **__):
  raise RuntimeError('no TPU chip is attached to this machine')
