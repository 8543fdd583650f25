"""Configs as Python (``ml_collections.ConfigDict``), one per dataset.

``get_config(name, model)`` returns the settings of one named config for one
model:

* ``'mosei'``, ``'iemocap'``: the paper's settings for that dataset (top_p,
  length caps);
* ``'default'``: the authors' hyperparameters that the others start from;
* ``'synthetic'``: narrow widths for the embedded demo dataset;
* ``'manifest'``: your own clips listed in a CSV / JSONL manifest;
* ``'smoke'``: tiny widths for tests.

``model`` is ``'mesm'`` (the default), ``'fe2e'`` or one of the baselines
``BASELINES`` (``'lf_lstm'``, ``'lf_trans'``, ``'mult'``, ``'emoembs'``,
trained on feature sequences, each with its authors' recipe: ``RECIPES``,
and per dataset ``DATASET_RECIPES``).  It sets ``model`` and
the batch size that goes with it: the paper trains MESM with batches of 2 and
FE2E with batches of 8 (MOSEI and IEMOCAP; ``'synthetic'`` and ``'smoke'``
keep their own).  So ``get_config('iemocap', 'fe2e')`` from Python and
``--dataset iemocap --model fe2e`` on the command line give the same config.
Setting ``config.model`` afterwards changes the model only, not the batch.

Every field can be overridden from the command line (``--top_p 0.5``);
``FIELDS`` declares each field once: its default, what it means and in
which unit (``HELP``), and the names it may take (``CHOICES``).  The names
of the models and of every other choice (``MODELS``, ``DTYPES``, ...) are
defined here and imported by the model code and the flags; ``check(config)``
is the one validation that every entry point calls (the command line, the
training loop, ``build_model``, the ahead-of-time compiler).

This package imports nothing but ``ml_collections``: the command-line flags
(and ``--help``) are built from it without loading JAX or TensorFlow.
"""

import importlib
from typing import Optional

import ml_collections

from mesm_jax.configs.checks import check
from mesm_jax.configs.default import (
    ATTENTION_GRADS, BASELINES, CHOICES, DATASET_RECIPES, DATASETS, DTYPES,
    END_TO_END, FACE_DETECTORS, FIELDS, HELP, INITS, MODALITIES, MODELS,
    PAPER_BATCH_SIZE, RECIPES, RUNNERS, SPARSE_IMPLS, TEXT_RULES, Field,
    recipe)

NAMES = ('default', 'mosei', 'iemocap', 'synthetic', 'manifest', 'smoke')

__all__ = ['ATTENTION_GRADS', 'BASELINES', 'CHOICES', 'DATASET_RECIPES',
           'DATASETS', 'DTYPES', 'END_TO_END', 'FACE_DETECTORS', 'FIELDS',
           'Field', 'HELP', 'INITS', 'MODALITIES', 'MODELS', 'NAMES',
           'PAPER_BATCH_SIZE', 'RECIPES', 'RUNNERS', 'SPARSE_IMPLS',
           'TEXT_RULES', 'check', 'get_config', 'is_baseline', 'recipe']


def is_baseline(config) -> bool:
  """True when ``config`` trains a baseline (``BASELINES``) on feature
  sequences instead of FE2E / MESM on faces, spectrograms and tokens."""
  return config.model in BASELINES


def get_config(name: str = 'default', model: Optional[str] = None
               ) -> ml_collections.ConfigDict:
  """The config ``name`` (one of ``NAMES``) for ``model`` (default 'mesm')."""
  if name not in NAMES:
    raise ValueError(f'unknown config {name!r}; choose one of {NAMES}')
  model = model or 'mesm'
  if model not in MODELS:
    raise ValueError(f'unknown model {model!r}; choose one of {MODELS}')
  module = importlib.import_module(f'mesm_jax.configs.{name}')
  return module.get_config(model)
