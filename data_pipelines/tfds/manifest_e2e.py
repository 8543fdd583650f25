"""TFDS builder ``manifest_e2e``: your own clips, listed in a manifest.

A CSV or JSONL file with one row per clip (``data_pipelines/readers/
manifest.py``, docs/data.md): id, video, optional audio, optional start/end,
transcript, split and the labels.  The label set (names and count) and
whether a clip has one label or several come from the manifest, so the
builder has no named configs: its config is made from the manifest's path,
and its name holds a hash of the manifest's contents (an edited manifest is
other data).  Same preprocessing, features and tf.data path as MOSEI.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from data_pipelines.readers import manifest as manifest_reader
from data_pipelines.tfds import base

_INSTRUCTIONS = """\
The manual dir is the manifest's folder; the manifest itself is named by the
builder config (`--manifest clips.csv` of experiments/run.py). Paths in the
manifest are relative to its folder. See docs/data.md, "Your own data".
"""


class ManifestE2e(base.E2EBuilder):
  """Clips of a manifest: faces, mel chunks, transcript tokens, its labels."""

  DATASET = 'manifest'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = []
  CITATION = ''

  def _label_set(self) -> tuple[tuple[str, ...], bool]:
    path = self.builder_config.manifest
    if not path:
      raise ValueError('manifest_e2e needs a builder config with a manifest '
                       '(--manifest FILE)')
    return manifest_reader.label_set(path)

  def label_names(self) -> tuple[str, ...]:
    return self._label_set()[0]

  def multi_label(self) -> bool:
    return self._label_set()[1]

  def reader_source(self, raw_dir: Path) -> Path:
    del raw_dir  # the manifest names its files
    return Path(self.builder_config.manifest).expanduser().resolve()

  def source_files(self, splits_dir: Path | None) -> list[Path]:
    del splits_dir  # always None: its split column says it
    return [self.reader_source(Path())]

  def _cache_key(self, raw_dir: Path) -> str:
    """One preprocessing cache per manifest file and contents."""
    path = self.reader_source(raw_dir)
    digest = hashlib.sha1(str(path).encode() + path.read_bytes())
    return f'{self.DATASET}-{digest.hexdigest()[:10]}'

  def splits_dir_for(self, raw_dir: Path) -> Path | None:
    if self._splits_dir:
      raise ValueError(
          f'{self.builder_config.manifest}: a manifest holds its own splits '
          '(its split column); drop --splits_dir')
    return None
