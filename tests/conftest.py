"""Shared pytest fixtures (kept minimal).

setup.cfg runs the suite on two pytest-xdist workers with ``--dist loadfile``:
each test file runs whole on one worker, so a module fixture (a trained
model, a built dataset) is made once.  No fixture is shared across files.
"""

import os

# The suite runs on the CPU.  With libtpu installed (the dev extra: TPU
# compilation in test_tpu.py) jax would otherwise probe for a TPU first.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')  # libtpu's lock file

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

import compile_settings  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture
def fast_compile():
  """Opt-in: cheaper XLA compiles for tests that build whole models.

  Use with ``pytestmark = pytest.mark.usefixtures('fast_compile')``; the
  previous setting is restored after each test.
  """
  with compile_settings.fast():
    yield


# The files that take longest (their module fixtures train, compile for a
# TPU or start processes), longest first: with --dist loadfile and
# --no-loadscope-reorder (setup.cfg) xdist hands files to the two workers in
# collection order, so starting with these keeps one worker from being left
# with a long file at the end.  Measured with
# --durations (setup.cfg) on a 2-core machine.
LONGEST_FIRST = ('test_multihost.py', 'test_learning.py', 'test_sweep.py',
                 'test_baselines_train.py', 'test_feature_layouts.py',
                 'test_tpu.py', 'test_gcs.py', 'test_multidevice.py',
                 'test_train.py', 'test_predict.py', 'test_readme.py',
                 'test_features.py', 'test_models.py')


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
