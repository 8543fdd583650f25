"""Configs as Python (``ml_collections.ConfigDict``), one per dataset.

``get_config('mosei')`` returns the paper's MOSEI settings; ``'smoke'`` is a
tiny variant for tests.  Every field can be overridden from the command line.
"""

import importlib

import ml_collections

NAMES = ('default', 'mosei', 'iemocap', 'synthetic', 'smoke')


def get_config(name: str = 'default') -> ml_collections.ConfigDict:
  if name not in NAMES:
    raise ValueError(f'unknown config {name!r}; choose one of {NAMES}')
  module = importlib.import_module(f'mesm_jax.configs.{name}')
  return module.get_config()
