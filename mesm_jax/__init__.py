"""mesm-jax: MESM and FE2E (Dai et al., NAACL 2021) in JAX/Flax.

The public API: ``get_config`` (``mesm_jax.configs``), ``build_model``,
``param_labels`` and ``pytorch_init`` (``mesm_jax.models``) and the nucleus rule
(``nucleus_capacity``, ``nucleus_mask``, ``nucleus_topk``;
``mesm_jax.nucleus``).

The model functions are imported on first use (a module ``__getattr__``,
PEP 562), not here: importing any submodule runs this file first, and the
command-line flags (``experiments/run.py --help``) import
``mesm_jax.configs``, which must not wait for JAX to load.  To a user
``mesm_jax.build_model`` etc. are plain attributes; ``import mesm_jax``
alone loads only the configs.
"""

import importlib
from typing import Any, List

from mesm_jax.configs import get_config

# Public name -> the module that defines it (imported on first access).
_LAZY = {
    'build_model': 'mesm_jax.models',
    'param_labels': 'mesm_jax.models',
    'pytorch_init': 'mesm_jax.models',
    'nucleus_capacity': 'mesm_jax.nucleus',
    'nucleus_mask': 'mesm_jax.nucleus',
    'nucleus_topk': 'mesm_jax.nucleus',
}

__all__ = ['build_model', 'get_config', 'nucleus_capacity', 'nucleus_mask',
           'nucleus_topk', 'param_labels', 'pytorch_init']
__version__ = '0.1.0'


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> List[str]:
  return sorted(set(globals()) | set(_LAZY))
