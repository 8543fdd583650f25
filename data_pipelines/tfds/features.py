"""TFDS builder ``features_e2e``: hand-crafted feature sequences per clip.

The input of the paper's baselines (LF-LSTM, LF-TRANS, MulT, EmoEmbs;
``mesm_jax.models.baselines``).  One example is one utterance clip:

  clip_id       string
  text_feats    float32 [Lt, 300]   GloVe-like vector per word
  audio_feats   float32 [La, 144]   acoustic features per 400 ms frame
  vision_feats  float32 [Lv, 35]    facial action units per video frame
  labels        float32 [E]         multi-hot emotions (E = 6)

Lt, La, Lv vary per clip (no cap at build time; the training side caps
them, ``mesm_jax.input_pipeline.make_dataset``).  Sources (the
builder config's ``source``, part of its name so sources never mix):

* ``'synthetic'``: the manual dir is a synthetic raw dir
  (``data_pipelines.synthetic.write_mosei_raw``); its ``ground_truth.json``
  gives the labels and its ``splits/`` the same train / valid / test split
  as the end-to-end synthetic data; the features are
  ``features.synthetic_clip_features`` of the labels, drawn per clip from a
  generator seeded by ``(seed, crc32(clip id))`` (independent of the split).
* ``'pickle'``: a MulT / MMSA / MESM feature pickle (``features_pickle``,
  read by ``readers.read_feature_pickle``, every split of the file merged)
  joined with the labels of ``dataset``'s raw data (the manual dir: MOSEI or
  IEMOCAP, raw or processed layout, ``readers.read_split``) on its split
  files (``splits_dir``, default the authors').  Clips of a split that the
  pickle lacks are left out and counted in ``info.metadata['source']``
  (``missing_features``).  The stored widths are fixed (300 / 144 / 35):
  a pickle with other widths (MulT's COVAREP audio is 74) is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import features
from data_pipelines import readers
from data_pipelines.tfds import base

SOURCES = ('synthetic', 'pickle')
TEXT_DIM, AUDIO_DIM, VISION_DIM = (features.GLOVE_DIM, features.ACOUSTIC_DIM,
                                   features.VISION_DIM)
FEATURE_KEYS = ('text_feats', 'audio_feats', 'vision_feats')
_MODALITY = {'text_feats': 'text', 'audio_feats': 'audio',
             'vision_feats': 'vision'}


@dataclasses.dataclass(eq=False)
class FeaturesConfig(tfds.core.BuilderConfig):
  """Where the features come from.

  Attributes:
    source: 'synthetic' | 'pickle'.
    features_pickle: the pickle file (source 'pickle'); its path and size
      are hashed into the config name.
    dataset: source 'pickle': whose labels and split files ('mosei' |
      'iemocap').
    seed: seed of the synthetic features.
  """
  source: str = 'synthetic'
  features_pickle: str = ''
  dataset: str = ''
  seed: int = 0


def config_name(c: FeaturesConfig) -> str:
  """A name that differs whenever the stored features would."""
  if c.source not in SOURCES:
    raise ValueError(f'source must be one of {SOURCES}, got {c.source!r}')
  if c.source == 'synthetic':
    return f'synthetic-s{c.seed}'
  path = Path(c.features_pickle).expanduser()
  stem = ''.join(ch if ch.isalnum() else '_' for ch in path.stem)
  size = path.stat().st_size if path.is_file() else 0
  digest = hashlib.sha1(f'{path.resolve()}:{size}'.encode()).hexdigest()[:8]
  return f'pickle-{c.dataset}-{stem}_{digest}'


def features_config(source: str = 'synthetic', features_pickle: str = '',
                    seed: int = 0, dataset: str = '') -> FeaturesConfig:
  c = FeaturesConfig(name='custom', source=source,
                     features_pickle=features_pickle, seed=seed,
                     dataset=dataset)
  c.name = config_name(c)
  c.description = f'Feature sequences from the {source} source.'
  return c


class FeaturesE2e(tfds.core.GeneratorBasedBuilder):
  """Feature sequences (text, audio, vision) and emotions per clip."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [features_config('synthetic')]
  EMOTIONS = readers.mosei.EMOTIONS        # synthetic and MOSEI labels
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'source synthetic: a synthetic raw dir (ground_truth.json, splits/), '
      'written by data_pipelines.synthetic.write_mosei_raw.')

  def __init__(self, *, splits_dir: str | Path | None = None, **kwargs):
    """As a TFDS builder; ``splits_dir``: the split files of a pickle
    source (default: the authors' shipped ones)."""
    self._splits_dir = splits_dir
    super().__init__(**kwargs)

  def label_names(self) -> tuple[str, ...]:
    if self.builder_config.dataset == 'iemocap':
      return tuple(readers.iemocap.EMOTIONS)
    return tuple(self.EMOTIONS)

  def _log_download_bytes(self) -> None:  # nothing is downloaded
    pass

  def _log_download_done(self) -> None:
    pass

  def _info(self) -> tfds.core.DatasetInfo:
    tensor = tfds.features.Tensor
    names = self.label_names()
    multi = self.builder_config.dataset != 'iemocap'
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'clip_id': tfds.features.Text(),
            'text_feats': tensor(shape=(None, TEXT_DIM), dtype=np.float32,
                                 encoding='bytes'),
            'audio_feats': tensor(shape=(None, AUDIO_DIM), dtype=np.float32,
                                  encoding='bytes'),
            'vision_feats': tensor(shape=(None, VISION_DIM),
                                   dtype=np.float32, encoding='bytes'),
            'labels': tensor(shape=(len(names),), dtype=np.float32,
                             doc=('multi-hot: ' if multi else 'one-hot: ')
                             + ', '.join(names)),
        }),
        supervised_keys=None,
        homepage='https://aclanthology.org/2021.naacl-main.417/',
        citation=base.CITATION,
        metadata=tfds.core.MetadataDict(emotions=list(names),
                                        multi_label=multi),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    c = self.builder_config
    raw_dir = Path(dl_manager.manual_dir)
    if c.source == 'pickle':
      return self._pickle_splits(raw_dir)
    truth = json.loads((raw_dir / 'ground_truth.json').read_text())
    self.info.metadata['source'] = {
        'raw_dir': str(raw_dir.resolve()),
        'split_ids_sha1': split_ids_sha1(raw_dir / 'splits')}
    out = {}
    for split in base.SPLITS:
      ids = [l.strip() for l in (raw_dir / 'splits' / f'{split}.txt')
             .read_text().splitlines() if l.strip()]
      out[split] = self._generate_examples(truth, ids, c.seed)
    return out

  def _pickle_splits(self, raw_dir: Path):
    c = self.builder_config
    feats = features.read_feature_pickle(Path(c.features_pickle).expanduser())
    splits_dir = (Path(self._splits_dir).expanduser() if self._splits_dir
                  else None)
    source = {'raw_dir': str(raw_dir.resolve()),
              'features_pickle': str(Path(c.features_pickle).resolve()),
              'split_files': str(splits_dir.resolve()) if splits_dir
              else 'shipped', 'missing_features': {}}
    out = {}
    for split in base.SPLITS:
      clips = readers.read_split(c.dataset, raw_dir, split,
                                 splits_dir=splits_dir).clips
      found, missing = features.join_with_split(
          feats, [clip.clip_id for clip in clips])
      source['missing_features'][split] = len(missing)
      labels = {clip.clip_id: clip.labels for clip in clips}
      out[split] = _joined_examples(found, labels)
    self.info.metadata['source'] = source
    return out

  def _generate_examples(self, truth, ids, seed):
    for clip_id in ids:
      labels = np.asarray(truth[clip_id]['labels'], np.float32)
      rng = np.random.default_rng([seed, zlib.crc32(clip_id.encode())])
      feats = features.synthetic_clip_features(labels, rng)
      yield clip_id, to_example(clip_id, feats, labels)


def _joined_examples(found: dict, labels: dict):
  for clip_id, feats in found.items():
    yield clip_id, to_example(clip_id, feats, labels[clip_id])


def to_example(clip_id: str, feats: dict, labels) -> dict:
  """One stored example from ``{'text', 'audio', 'vision'}`` arrays."""
  ex = {'clip_id': clip_id, 'labels': np.asarray(labels, np.float32)}
  dims = {'text_feats': TEXT_DIM, 'audio_feats': AUDIO_DIM,
          'vision_feats': VISION_DIM}
  for key, dim in dims.items():
    x = np.asarray(feats[_MODALITY[key]], np.float32)
    if x.ndim != 2 or x.shape[1] != dim or x.shape[0] < 1:
      raise ValueError(f'clip {clip_id}: {_MODALITY[key]} features must be '
                       f'[n>=1, {dim}], got {x.shape}')
    ex[key] = x
  return ex


def split_ids_sha1(splits_dir: Path) -> str:
  digest = hashlib.sha1()
  for split in base.SPLITS:
    digest.update((splits_dir / f'{split}.txt').read_bytes())
  return digest.hexdigest()
