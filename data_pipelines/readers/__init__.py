"""Dataset readers: raw releases and the authors' processed folders -> clips.

Each dataset module (``mosei``, ``iemocap``) reads BOTH layouts of its dataset
(MESM.md, "Raw data layouts") and returns, for one split, the clips to
preprocess, the clips skipped at read time (with reason and file) and the ids
of the split file that the data lacks.  Nothing here decodes video or audio:
a ``Clip`` says where the clip's frames and audio are and what its text and
labels are; ``data_pipelines.preprocess`` turns it into an example.  What the
readers share is in ``common``.
"""

from __future__ import annotations

from pathlib import Path

from data_pipelines.readers import iemocap
from data_pipelines.readers import mosei
from data_pipelines.readers.common import (
    DATASETS, SHIPPED_SPLITS, SPLITS, Clip, Skip, SplitClips, read_split_ids,
    split_file)

__all__ = ['DATASETS', 'SHIPPED_SPLITS', 'SPLITS', 'Clip', 'Skip',
           'SplitClips', 'read_split', 'read_split_ids', 'split_file']

_READERS = {'mosei': mosei, 'iemocap': iemocap}


def read_split(dataset: str, raw_dir: str | Path, split: str, *,
               splits_dir: str | Path | None = None,
               **options) -> SplitClips:
  """Reads one split of ``dataset`` from ``raw_dir`` (layout auto-detected).

  ``options`` go to the dataset reader (IEMOCAP: ``text_rule``).
  """
  if dataset not in _READERS:
    raise ValueError(f'dataset must be one of {DATASETS}, got {dataset!r}')
  ids = read_split_ids(dataset, split, splits_dir)
  return _READERS[dataset].read(raw_dir, ids, **options)
