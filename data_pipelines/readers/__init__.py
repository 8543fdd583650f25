"""Dataset readers: raw releases and the authors' processed folders -> clips.

Each dataset module (``mosei``, ``iemocap``) reads BOTH layouts of its dataset
(MESM.md, "Raw data layouts") and returns, for one split, the clips to
preprocess, the clips skipped at read time (with reason and file) and the ids
of the split file that the data lacks.  Nothing here decodes video or audio:
a ``Clip`` says where the clip's frames and audio are and what its text and
labels are; ``data_pipelines.preprocess`` turns it into an example.  What the
readers share is in ``common``.

``feature_pickle`` reads hand-crafted feature files instead (the baselines'
input): MulT / MMSA pickles (``read_feature_pickle``) and the MESM authors'
IEMOCAP feature folder (``read_iemocap_hcf``).

``manifest`` reads a user's own CSV / JSONL list of clips instead: it names
its files and holds its own splits (its ``split`` column), so ``raw_dir`` is
the manifest file and there are no split files.
"""

from __future__ import annotations

from pathlib import Path

from data_pipelines.readers import feature_pickle
from data_pipelines.readers import iemocap
from data_pipelines.readers import manifest
from data_pipelines.readers import mosei
from data_pipelines.readers.common import (
    DATASETS, SHIPPED_SPLITS, SPLITS, Clip, Skip, SplitClips, read_split_ids,
    split_file)
from data_pipelines.readers.feature_pickle import (
    FeatureFileError, read_feature_pickle, read_iemocap_hcf,
    read_iemocap_hcf_report)

__all__ = ['DATASETS', 'SHIPPED_SPLITS', 'SPLITS', 'Clip', 'FeatureFileError',
           'Skip', 'SplitClips', 'feature_pickle', 'read_feature_pickle',
           'read_iemocap_hcf', 'read_iemocap_hcf_report', 'read_split',
           'read_split_ids', 'split_file']

_READERS = {'mosei': mosei, 'iemocap': iemocap, 'manifest': manifest}


def read_split(dataset: str, raw_dir: str | Path, split: str, *,
               splits_dir: str | Path | None = None,
               **options) -> SplitClips:
  """Reads one split of ``dataset`` from ``raw_dir`` (layout auto-detected).

  ``options`` go to the dataset reader (IEMOCAP: ``text_rule``).  For
  ``'manifest'``, ``raw_dir`` is the manifest file and the split comes from
  its ``split`` column (``splits_dir`` must be None).
  """
  if dataset not in _READERS:
    raise ValueError(f'dataset must be one of {DATASETS}, got {dataset!r}')
  if dataset == 'manifest':
    if splits_dir is not None:
      raise ValueError(
          f'{raw_dir}: a manifest holds its own splits (its split column); '
          f'splits_dir ({splits_dir}) cannot be used with it')
    return manifest.read(raw_dir, split, **options)
  ids = read_split_ids(dataset, split, splits_dir)
  return _READERS[dataset].read(raw_dir, ids, **options)
