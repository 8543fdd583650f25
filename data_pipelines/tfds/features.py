"""TFDS builder ``features_e2e``: hand-crafted feature sequences per clip.

The input of the paper's baselines (LF-LSTM, LF-TRANS, MulT, EmoEmbs; the
model library's ``models/baselines``).  One example is one utterance clip:

  clip_id       string
  text_feats    float32 [Lt, Dt]    word vectors
  audio_feats   float32 [La, Da]    acoustic features per frame
  vision_feats  float32 [Lv, Dv]    facial features per video frame
  labels        float32 [E]         multi-hot emotions (E = 6)

Widths.  Sources 'synthetic' and 'raw' store fixed ones, in the features'
shapes: Dt the config's ``text_dim`` (300 GloVe, 384 the MiniLM
substitute), Da 144 (``features.ACOUSTIC_GROUPS``), Dv 35 action units.
Source 'pickle' stores the files' widths, whatever they are (MulT's MOSEI
pickle: 300 / 74 / 35; MMSA's: its own; the authors' IEMOCAP folder: 300 /
144 / 35): the features' shapes are ``[None, None]`` and the widths are in
``info.metadata['feature_dims']`` (``[Dt, Da, Dv]``), which the model
library's feature pipeline reads and the baselines are built at.

Lt, La, Lv vary per clip (no cap at build time; the model library's input
pipeline caps them).  Sources (the builder config's ``source``, part of its
name so sources never mix):

* ``'synthetic'``: the manual dir is a synthetic raw dir
  (``data_pipelines.synthetic.write_mosei_raw``); its ``ground_truth.json``
  gives the labels and its ``splits/`` the same train / valid / test split
  as the end-to-end synthetic data; the features are
  ``features.synthetic_clip_features`` of the labels, drawn per clip from a
  generator seeded by ``(seed, crc32(clip id))`` (independent of the split).
* ``'pickle'``: ``features_pickle`` is one of
  - a MulT / MMSA pickle (``readers.read_feature_pickle``, every split of
    the file merged; MulT's ``(video, start, end)`` id rows are mapped to
    clip ids by the labels' clip times, ``normalise_clip_id``);
  - the MESM authors' MOSEI features: a folder holding
    ``mosei_senti_hcf_{train,valid,test}.pkl``, or those files
    comma-separated (``readers.read_feature_files``);
  - a folder of the MESM authors' IEMOCAP features
    (``{train,valid,test}_{text,audio,video}_features.pt``, read by
    ``readers.read_iemocap_hcf_report``, the three phases merged; dataset
    'iemocap' only; utterances lacking from one of their phase's files are
    left out and counted in ``info.metadata['source']``
    (``incomplete_features``));
  joined with the labels of ``dataset``'s raw data (the manual dir: MOSEI
  or IEMOCAP, raw or processed layout, ``readers.read_split``) on its split
  files (``splits_dir``, default the authors').  Every frame of the files
  is kept (no trimming, no cap: the originals feed them all).  Clips of a
  split that the files lack are left out and counted in
  ``info.metadata['source']`` (``missing_features``); a modality with no
  frame at all (an empty text or no face frame in the authors' IEMOCAP
  files) is stored as one zero frame and counted (``empty_modalities``).
* ``'raw'``: features computed from ``dataset``'s raw clips (the manual
  dir: MOSEI or IEMOCAP in either layout on its split files, or a
  manifest), per clip of each split file:

  - audio: ``features.clip_acoustic_features`` of the clip's wav in
    [start, end) (the clip's channel for IEMOCAP); a clip without a wav
    (manifest) uses its video's audio track (``audio.read_video_audio``);
  - text: the GloVe vectors of its words (``glove_path``; the rule of
    ``features.glove_vectors``: as written, else lowercased, else zeros; the
    file is read once for the vocabulary of every split), or with
    ``glove_path`` '' the MiniLM input-embedding substitute
    (``features.minilm_input_embeddings``, 384-d): the stored text width
    ``text_dim`` (300 / 384) is part of the config and of its name;
  - vision: the 35 action units of ``<video id>.csv`` in (or below)
    ``openface_dir`` (``readers.openface``), the rows whose timestamp is in
    [start, end]; the video id is the stem of the clip's video file, or the
    clip id for a clip without one (processed layout: the whole CSV).

  A clip that fails (no CSV, no rows in its window, unreadable wav, no
  words, ...) is skipped, not fatal: as for the end-to-end builders
  (``base``), each split's counts and skipped ids go to
  ``info.metadata['skip_report']``, one JSON line per skipped clip (clip
  id, reason, file, detail) to ``<download dir>/features_raw/<config
  name>/skipped.jsonl``, and a summary line is logged.  A split left
  without any clip is an error that says why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import audio
from data_pipelines import features
from data_pipelines import paths
from data_pipelines import preprocess
from data_pipelines import readers
from data_pipelines.readers import feature_pickle
from data_pipelines.readers import manifest as manifest_reader
from data_pipelines.readers import openface
from data_pipelines.tfds import base

SOURCES = ('synthetic', 'pickle', 'raw')
RAW_DATASETS = ('mosei', 'iemocap', 'manifest')
TEXT_DIM, AUDIO_DIM, VISION_DIM = (features.GLOVE_DIM, features.ACOUSTIC_DIM,
                                   features.VISION_DIM)
MINILM_TEXT_DIM = features.MINILM_DIM
FEATURE_KEYS = ('text_feats', 'audio_feats', 'vision_feats')
_MODALITY = {'text_feats': 'text', 'audio_feats': 'audio',
             'vision_feats': 'vision'}


@dataclasses.dataclass(eq=False)
class FeaturesConfig(tfds.core.BuilderConfig):
  """Where the features come from.

  Attributes:
    source: 'synthetic' | 'pickle' | 'raw'.
    features_pickle: source 'pickle': a MulT / MMSA pickle file, a folder
      of the authors' MOSEI (``mosei_senti_hcf_*.pkl``) or IEMOCAP
      (``*_features.pt``) features, or comma-separated pickle files; the
      paths and sizes (a folder: its files' names and sizes) are hashed
      into the config name.
    dataset: sources 'pickle' and 'raw': whose labels and split files
      ('mosei' | 'iemocap'; 'raw' also 'manifest').
    seed: seed of the synthetic features.
    glove_path: source 'raw': GloVe text file of the word vectors ('' = the
      MiniLM substitute); its path and size are hashed into the name.
    openface_dir: source 'raw': folder of OpenFace 2.0 CSVs, one per video;
      its path and its CSVs' names and sizes are hashed into the name.
    manifest: source 'raw', dataset 'manifest': the manifest file (its
      contents are hashed into the name).
    text_dim: width of the stored word vectors: 300 (GloVe, and the
      synthetic and pickle sources), 384 (source 'raw' without glove_path);
      set by ``features_config``.
  """
  source: str = 'synthetic'
  features_pickle: str = ''
  dataset: str = ''
  seed: int = 0
  glove_path: str = ''
  openface_dir: str = ''
  manifest: str = ''
  text_dim: int = TEXT_DIM


def config_name(c: FeaturesConfig) -> str:
  """A name that differs whenever the stored features would."""
  if c.source not in SOURCES:
    raise ValueError(f'source must be one of {SOURCES}, got {c.source!r}')
  if c.source == 'synthetic':
    return f'synthetic-s{c.seed}'
  if c.source == 'raw':
    return raw_config_name(c)
  # '-w': stored at the files' widths, every frame kept (data built before,
  # at fixed widths with zero edge rows trimmed, is not reused).
  return f'pickle-{c.dataset}-{_pickle_tag(c.features_pickle)}-w'


def _stem(path: Path) -> str:
  return ''.join(ch if ch.isalnum() else '_' for ch in path.stem)


def _file_tag(file: str) -> str:
  """``<stem>_<sha1 of the resolved path and the size>`` of a file."""
  path = Path(file).expanduser()
  size = path.stat().st_size if path.is_file() else 0
  digest = hashlib.sha1(f'{path.resolve()}:{size}'.encode()).hexdigest()[:8]
  return f'{_stem(path)}_{digest}'


def _folder_digest(folder: str, pattern: str = '*.csv') -> str:
  """sha1 of a folder's resolved path and the relative names and sizes of
  its files matching ``pattern``, recursively (another OpenFace run that
  rewrites a CSV changes it, usually its size)."""
  path = Path(folder).expanduser()
  digest = hashlib.sha1(str(path.resolve()).encode())
  if path.is_dir():
    for file in sorted(path.rglob(pattern)):
      digest.update(f'\n{file.relative_to(path)}:{file.stat().st_size}'
                    .encode())
  return digest.hexdigest()[:8]


def _pickle_tag(features_pickle: str) -> str:
  """``_file_tag`` of a pickle file; for a folder (the authors' IEMOCAP or
  MOSEI features) ``<folder name>_<_folder_digest of its .pt / .pkl
  files>``; for comma-separated files the first one's stem and a digest of
  every file's path and size."""
  if ',' in features_pickle:
    files = [p.strip() for p in features_pickle.split(',') if p.strip()]
    digest = hashlib.sha1('\n'.join(_file_tag(f) for f in files).encode())
    return f'{_stem(Path(files[0]))}_{digest.hexdigest()[:8]}'
  path = Path(features_pickle).expanduser()
  if path.is_dir():
    name = ''.join(ch if ch.isalnum() else '_' for ch in path.resolve().name)
    pattern = '*.pt' if is_iemocap_folder(features_pickle) else '*.pkl'
    return f'{name}_{_folder_digest(features_pickle, pattern)}'
  return _file_tag(features_pickle)


def raw_config_name(c: FeaturesConfig) -> str:
  """``raw-<dataset>[-<manifest tag>]-<text>-t<dim>-<audio>-openface_<digest>``
  (``audio``: ac2_disvoice | ac2_approx, whether the optional disvoice
  package computes the acoustic features or this project's approximation
  does; ``ac2``: the acoustic layout of ``features.ACOUSTIC_GROUPS``, data
  of the earlier layout, named ``phon_*``, is not reused)."""
  if c.dataset not in RAW_DATASETS:
    raise ValueError(f'source raw: dataset must be one of {RAW_DATASETS}, got '
                     f'{c.dataset!r}')
  if not c.openface_dir:
    raise ValueError('source raw needs openface_dir (the OpenFace 2.0 CSVs)')
  # 'minilm2': the MiniLM vectors without the tokenizer file's [PAD]
  # padding (data built with it, tagged 'minilm', held nearly the same
  # vector for every word and is not reused).
  text = f'glove_{_file_tag(c.glove_path)}' if c.glove_path else 'minilm2'
  data = c.dataset
  if c.dataset == 'manifest':
    if not c.manifest:
      raise ValueError('source raw, dataset manifest: needs the manifest file')
    path = Path(c.manifest).expanduser()
    data += (f'-{_stem(path)}_'
             f'{hashlib.sha1(path.read_bytes()).hexdigest()[:8]}')
  # Without the optional disvoice package the acoustic features are this
  # project's approximations (features.acoustic_features): data built so is
  # not reused once it is installed.
  phon = ('ac2_disvoice' if importlib.util.find_spec('disvoice') is not None
          else 'ac2_approx')
  return (f'raw-{data}-{text}-t{c.text_dim}-{phon}-openface_'
          f'{_folder_digest(c.openface_dir)}')


def text_dim(source: str, glove_path: str = '') -> int:
  """Width of the stored word vectors: 384 for source 'raw' without
  ``glove_path`` (the MiniLM substitute), else 300 (GloVe, and the synthetic
  and pickle sources)."""
  return MINILM_TEXT_DIM if source == 'raw' and not glove_path else TEXT_DIM


def features_config(source: str = 'synthetic', features_pickle: str = '',
                    seed: int = 0, dataset: str = '', *,
                    glove_path: str = '', openface_dir: str = '',
                    manifest: str = '') -> FeaturesConfig:
  """The config of a source (its name: ``config_name``).

  The stored text width is ``text_dim(source, glove_path)``.
  """
  c = FeaturesConfig(name='custom', source=source,
                     features_pickle=features_pickle, seed=seed,
                     dataset=dataset, glove_path=glove_path,
                     openface_dir=openface_dir, manifest=manifest,
                     text_dim=text_dim(source, glove_path))
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
    c = self.builder_config
    if c.dataset == 'iemocap':
      return tuple(readers.iemocap.EMOTIONS)
    if c.dataset == 'manifest':
      return tuple(manifest_reader.label_set(c.manifest)[0])
    return tuple(self.EMOTIONS)

  def multi_label(self) -> bool:
    c = self.builder_config
    if c.dataset == 'manifest':
      return bool(manifest_reader.label_set(c.manifest)[1])
    return c.dataset != 'iemocap'

  def _log_download_bytes(self) -> None:  # nothing is downloaded
    pass

  def _log_download_done(self) -> None:
    pass

  def stored_widths(self) -> tuple[int | None, int | None, int | None]:
    """(text, audio, vision) widths of the features' shapes: the fixed ones
    of sources synthetic and raw, None (the files' own) for pickle."""
    c = self.builder_config
    if c.source == 'pickle':
      return (None, None, None)
    return (int(c.text_dim), AUDIO_DIM, VISION_DIM)

  def _info(self) -> tfds.core.DatasetInfo:
    tensor = tfds.features.Tensor
    names = self.label_names()
    multi = self.multi_label()
    text_dim, audio_dim, vision_dim = self.stored_widths()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'clip_id': tfds.features.Text(),
            'text_feats': tensor(shape=(None, text_dim), dtype=np.float32,
                                 encoding='bytes'),
            'audio_feats': tensor(shape=(None, audio_dim), dtype=np.float32,
                                  encoding='bytes'),
            'vision_feats': tensor(shape=(None, vision_dim),
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
    if c.source == 'raw':
      return self._raw_splits(raw_dir,
                              paths.local_path(dl_manager.download_dir))
    truth = json.loads((raw_dir / 'ground_truth.json').read_text())
    self.info.metadata['source'] = {
        'raw_dir': str(raw_dir.resolve()),
        'split_ids_sha1': split_ids_sha1(raw_dir / 'splits')}
    self.info.metadata['feature_dims'] = list(self.stored_widths())
    out = {}
    for split in base.SPLITS:
      ids = [l.strip() for l in (raw_dir / 'splits' / f'{split}.txt')
             .read_text().splitlines() if l.strip()]
      out[split] = self._generate_examples(truth, ids, c.seed)
    return out

  def _pickle_splits(self, raw_dir: Path):
    c = self.builder_config
    path = Path(c.features_pickle.split(',')[0].strip()).expanduser()
    source = {'raw_dir': str(raw_dir.resolve()),
              'features_pickle': ','.join(
                  str(Path(p.strip()).expanduser().resolve())
                  for p in c.features_pickle.split(',') if p.strip())}
    splits_dir = (Path(self._splits_dir).expanduser() if self._splits_dir
                  else None)
    clips = {split: readers.read_split(c.dataset, raw_dir, split,
                                       splits_dir=splits_dir).clips
             for split in base.SPLITS}
    if is_iemocap_folder(c.features_pickle):
      if c.dataset != 'iemocap':
        raise ValueError(
            f'features_pickle {path} is a folder of the MESM authors\' '
            'IEMOCAP features ({train,valid,test}_{text,audio,video}_'
            f'features.pt): its labels must come from dataset iemocap, not '
            f'{c.dataset!r}')
      read = readers.read_iemocap_hcf_report(path)
      feats = read.features
      source['features_layout'] = 'iemocap_hcf'
      source['incomplete_features'] = len(read.incomplete)
      if read.incomplete:
        logging.warning(
            '%s: %d utterances left out, not in all three files of their '
            'phase (first: %s)', path, len(read.incomplete),
            ', '.join(f'{p}/{u} lacks {"+".join(f)}'
                      for p, u, f in read.incomplete[:5]))
    else:
      # None when the labels have no times (processed layout): a MulT time
      # row is then an error that says why, not a silent mismatch.
      times = feature_pickle.clip_times_of(
          [clip for split in base.SPLITS for clip in clips[split]]) or None
      feats = features.read_feature_files(c.features_pickle,
                                          clip_times=times)
      source['features_layout'] = ('mosei_hcf' if path.is_dir() or
                                   ',' in c.features_pickle else 'mult_mmsa')
    source.update({'split_files': str(splits_dir.resolve()) if splits_dir
                   else 'shipped', 'missing_features': {}})
    widths = features.feature_widths(feats, str(path))
    dims = [widths[_MODALITY[k]] for k in FEATURE_KEYS]
    self.info.metadata['feature_dims'] = dims
    source['feature_dims'] = dict(zip(('text', 'audio', 'vision'), dims))
    out = {}
    for split in base.SPLITS:
      found, missing = features.join_with_split(
          feats, [clip.clip_id for clip in clips[split]])
      source['missing_features'][split] = len(missing)
      if missing:
        logging.warning('%s: %d of the %d clips of split %s are not in %s '
                        '(left out; first: %s)', self.name, len(missing),
                        len(clips[split]), split, path, ', '.join(missing[:5]))
      if not found:
        raise ValueError(
            f'{path}: none of the {len(clips[split])} clips of split {split} '
            f'({c.dataset}, e.g. '
            f'{", ".join(k.clip_id for k in clips[split][:3])}) '
            f'is in it (its ids: e.g. {", ".join(sorted(feats)[:3])}): '
            'another dataset, or ids in another form '
            '(readers.feature_pickle.normalise_clip_id)')
      labels = {clip.clip_id: clip.labels for clip in clips[split]}
      empty = source.setdefault('empty_modalities', {}).setdefault(split, {})
      out[split] = _joined_examples(found, labels, empty, dims)
    self.info.metadata['source'] = source
    return out

  def _raw_splits(self, raw_dir: Path, download_dir: Path):
    """Source 'raw': features computed from the clips (module doc)."""
    c = self.builder_config
    name = f'{self.name}/{c.name}'
    source_dir = (Path(c.manifest).expanduser().resolve()
                  if c.dataset == 'manifest' else raw_dir)
    splits_dir = (Path(self._splits_dir).expanduser() if self._splits_dir
                  else None)
    openface_dir = Path(c.openface_dir).expanduser()
    if not openface_dir.is_dir():
      raise FileNotFoundError(
          f'{name}: openface_dir {openface_dir} is not a directory (it should '
          'hold the OpenFace 2.0 CSVs, <video id>.csv, of the raw videos)')
    found = {split: readers.read_split(c.dataset, source_dir, split,
                                       splits_dir=splits_dir)
             for split in base.SPLITS}
    words = WordVectors(c.glove_path, [clip.text for f in found.values()
                                       for clip in f.clips])
    log_dir = download_dir / 'features_raw' / c.name
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / preprocess.SKIP_LOG).unlink(missing_ok=True)  # this build's
    self.info.metadata['source'] = {
        'raw_dir': str(source_dir.resolve()),
        'openface_dir': str(openface_dir.resolve()),
        'text': (str(Path(c.glove_path).expanduser().resolve())
                 if c.glove_path else 'minilm2'),
        'split_files': (str(splits_dir.resolve()) if splits_dir else
                        'manifest' if c.dataset == 'manifest' else 'shipped'),
        'skip_log': str(log_dir / preprocess.SKIP_LOG)}
    return {split: self._raw_examples(found[split], split, words,
                                      openface_dir, log_dir, raw_dir,
                                      splits_dir)
            for split in base.SPLITS}

  def _raw_examples(self, found: readers.SplitClips, split: str,
                    words: 'WordVectors', openface_dir: Path, log_dir: Path,
                    raw_dir: Path, splits_dir: Path | None
                    ) -> Iterator[tuple[str, dict[str, Any]]]:
    """The examples of one split; skips (and reports) the clips that fail."""
    c = self.builder_config
    name = f'{self.name}/{c.name}'
    t0 = time.time()
    report = preprocess.SkipReport(
        dataset=c.dataset, split=split, layout=found.layout,
        in_split_file=(len(found.clips) + len(found.skipped) +
                       len(found.missing)),
        missing=list(found.missing))
    skip_log = preprocess.SkipLog(log_dir, c.dataset, split)

    def skip(item: readers.Skip) -> None:
      skip_log.write(item)
      report.skipped[item.reason] += 1
      report.skipped_ids.append(item.clip_id)
      logging.warning('%s: %s clip %s skipped: %s (%s) %s', name, split,
                      item.clip_id, item.reason, item.file, item.detail)

    for item in found.skipped:
      skip(item)
    for clip in found.clips:
      try:
        feats = raw_clip_features(clip, words, openface_dir)
      except preprocess.ClipError as e:
        skip(readers.Skip(clip.clip_id, e.reason, e.file, e.detail))
        continue
      report.computed += 1
      report.yielded += 1
      yield clip.clip_id, to_example(clip.clip_id, feats, clip.labels,
                                     c.text_dim)
    report.seconds = time.time() - t0
    records = dict(self.info.metadata.get('skip_report') or {})
    records[split] = base.skip_record(report)
    self.info.metadata['skip_report'] = records
    reasons = ', '.join(f'{k}: {v}' for k, v in sorted(report.skipped.items()))
    log = logging.warning if report.skipped or report.missing else (
        logging.info)
    log('%s: %s: %d examples of %d ids in %.1f s; skipped %d (%s); %d ids of '
        'the split file not in the data%s', name, split, report.yielded,
        report.in_split_file, report.seconds, sum(report.skipped.values()),
        reasons or 'none', len(report.missing),
        f'; skipped clips and why: {skip_log.path}' if report.skipped else '')
    if not report.yielded:
      raise ValueError(base.no_clip_message(name, split, raw_dir, splits_dir,
                                            log_dir, report))

  def _generate_examples(self, truth, ids, seed):
    for clip_id in ids:
      labels = np.asarray(truth[clip_id]['labels'], np.float32)
      rng = np.random.default_rng([seed, zlib.crc32(clip_id.encode())])
      feats = features.synthetic_clip_features(labels, rng)
      yield clip_id, to_example(clip_id, feats, labels)


def is_iemocap_folder(features_pickle: str) -> bool:
  """Whether ``features_pickle`` is a folder of the authors' IEMOCAP
  features (it holds ``*_features.pt`` files)."""
  path = Path(features_pickle).expanduser()
  return (',' not in features_pickle and path.is_dir()
          and any(path.glob('*_features.pt')))


def _joined_examples(found: dict, labels: dict, empty: dict, dims):
  """The pickle's clips as examples at the files' widths ``dims``.  A
  modality with no frame (an empty text, no face frame) is one zero frame,
  as the original reads zeros there; ``empty`` counts them per modality."""
  for clip_id, feats in found.items():
    feats = dict(feats)
    for m in _MODALITY.values():
      x = np.asarray(feats[m], np.float32)
      if x.ndim == 2 and x.shape[0] == 0:
        feats[m] = np.zeros((1, x.shape[1]), np.float32)
        empty[m] = empty.get(m, 0) + 1
        logging.warning('%s: no %s features in the pickle: one zero frame',
                        clip_id, m)
    yield clip_id, to_example(clip_id, feats, labels[clip_id], dims=dims)


class WordVectors:
  """A clip's text -> word vectors [L, D] (source 'raw').

  With a GloVe file, the file is read once (``features.load_glove``) for
  the words of ``texts``, and each word gets the vector of
  ``features.glove_vectors``' rule (as written, else lowercased, else
  zeros), D = 300; without one, ``features.minilm_input_embeddings``
  (D = 384).  A text without words raises ``ClipError('no_words')``.
  """

  def __init__(self, glove_path: str, texts: list[str]):
    self.glove_path = str(Path(glove_path).expanduser()) if glove_path else ''
    self.table = None
    if self.glove_path:
      vocabulary = {w for t in texts for w in features.words_of(t)}
      self.table = features.load_glove(self.glove_path, vocabulary)

  def __call__(self, text: str) -> np.ndarray:
    words = features.words_of(text)
    if not words:
      raise preprocess.ClipError('no_words', '', f'transcript {text!r} has no '
                                 'words')
    if self.table is None:
      return features.minilm_input_embeddings(words)
    return features.glove_lookup(words, self.table, TEXT_DIM)


def openface_video_id(clip: readers.Clip) -> str:
  """The name of a clip's OpenFace CSV (without .csv): its video's stem, or
  the clip id for a clip without a video (processed layout)."""
  return Path(clip.video_path).stem if clip.video_path else clip.clip_id


def raw_clip_features(clip: readers.Clip, words: WordVectors,
                      openface_dir: str | Path) -> dict[str, np.ndarray]:
  """``{'text', 'audio', 'vision'}`` of one clip (source 'raw').

  Raises:
    preprocess.ClipError: the clip cannot be used (reason, file, detail):
      missing_openface, bad_openface, no_vision_frames, missing_audio,
      missing_video, bad_audio, no_words.
  """
  video_id = openface_video_id(clip)
  try:
    csv = openface.find_openface_csv(openface_dir, video_id)
  except FileNotFoundError as e:
    raise preprocess.ClipError(
        'missing_openface', str(Path(openface_dir) / f'{video_id}.csv'),
        str(e)) from e
  try:
    vision = openface.read_openface_csv(csv, start=clip.start, end=clip.end)
  except openface.OpenFaceError as e:
    raise preprocess.ClipError('bad_openface', str(csv), str(e)) from e
  if not vision.shape[0]:
    raise preprocess.ClipError(
        'no_vision_frames', str(csv),
        f'no row with a timestamp in [{clip.start}, {clip.end}] s')
  text = words(clip.text)
  from_video = not clip.audio_path
  source = clip.video_path if from_video else clip.audio_path
  if not source or not Path(source).is_file():
    raise preprocess.ClipError('missing_video' if from_video else
                               'missing_audio', source or '',
                               'no audio file for the clip')
  try:
    if from_video:
      wave, _ = audio.read_video_audio(source, clip.start, clip.end)
      acoustic = features.acoustic_features(wave, features.SAMPLE_RATE)
    else:
      acoustic = features.clip_acoustic_features(
          source, start=clip.start, end=clip.end, channel=clip.channel)
  except ValueError as e:      # audio.AudioError and empty spans
    raise preprocess.ClipError('bad_audio', source, str(e)) from e
  return {'text': text, 'audio': acoustic, 'vision': vision}


def to_example(clip_id: str, feats: dict, labels,
               text_dim: int = TEXT_DIM, dims=None) -> dict:
  """One stored example from ``{'text', 'audio', 'vision'}`` arrays; their
  widths must be ``dims`` (text, audio, vision), default ``(text_dim,
  AUDIO_DIM, VISION_DIM)``."""
  ex = {'clip_id': clip_id, 'labels': np.asarray(labels, np.float32)}
  dims = dict(zip(FEATURE_KEYS, dims or (text_dim, AUDIO_DIM, VISION_DIM)))
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
