"""Preparing the TFDS data of a dataset: raw files -> built TFDS dataset, once.

``prepare(dataset, builder_config, raw_dir=..., data_dir=...)`` returns the
prepared builder, building it from the raw release (the TFDS manual dir) when
the data dir does not hold it yet.  The synthetic dataset is generated into
``<data_dir>/synthetic_raw`` first.  Nothing is downloaded.

The data dir may be a ``gs://`` URL (``data_pipelines.paths``): TFDS writes
and reads the built data there itself.  What the build needs as local files
stays local, in ``paths.local_path(data_dir)``: the synthetic raw clips
(``synthetic_raw/``) and TFDS's download dir (``downloads/``: the per-clip
preprocessing cache, skip logs); for a local data dir that is the data dir
itself, as before.

``builder_config(dataset, ...)`` picks the named builder config that stores
the same data as the given settings, or makes a new one named after them, so
a config that matches the paper's settings reuses ``albert`` etc.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from data_pipelines import paths
from data_pipelines import synthetic
from data_pipelines.tfds import base
from data_pipelines.tfds import features as features_tfds
from data_pipelines.tfds.iemocap_e2e import IemocapE2e
from data_pipelines.tfds.manifest_e2e import ManifestE2e
from data_pipelines.tfds.mosei_e2e import MoseiE2e

SYNTHETIC_RAW = 'synthetic_raw'

# Label names of the datasets, in label-vector order, for data built before
# the builders stored them (``info.metadata['emotions']``).
EMOTION_NAMES = {
    'mosei': ('anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise'),
    'iemocap': ('anger', 'excited', 'frustrated', 'happy', 'neutral', 'sad'),
}
EMOTION_NAMES['synthetic'] = EMOTION_NAMES['mosei']
BUILDERS = {'mosei': MoseiE2e, 'iemocap': IemocapE2e, 'synthetic': MoseiE2e,
            'manifest': ManifestE2e}
DEFAULT_DATA_DIR = '~/tensorflow_datasets'


def builder_class(dataset: str) -> type[base.E2EBuilder]:
  if dataset not in BUILDERS:
    raise ValueError(f'unknown dataset {dataset!r}; choose one of '
                     f'{sorted(BUILDERS)}')
  return BUILDERS[dataset]


def builder_config(dataset: str, **settings) -> base.E2EConfig:
  """The builder config storing ``settings`` (a named one if it matches).

  Args:
    dataset: 'mosei' | 'iemocap' | 'synthetic' | 'manifest'.
    **settings: the data fields of ``base.E2EConfig`` (text_model,
      text_checkpoint, scratch_vocab_size, text_max_len, img_interval,
      log_mel, face_detector, text_rule, manifest); 'synthetic' sets
      ``synthetic``.
  """
  wanted = base.E2EConfig(name='custom', synthetic=dataset == 'synthetic',
                          **settings)
  for named in builder_class(dataset).BUILDER_CONFIGS:
    if named.same_data(wanted):
      return named
  wanted.name = base.config_name(wanted)
  wanted.description = 'Built from the settings of a training run.'
  return wanted


def data_dir_path(data_dir: str | Path | None) -> epath.Path:
  """The data dir (default ``~/tensorflow_datasets``); a URL stays a URL."""
  return paths.as_path(data_dir or DEFAULT_DATA_DIR)


def synthetic_raw_dir(raw_dir: str | Path | None,
                      data_dir: str | Path | None) -> Path:
  """``raw_dir`` if given, else ``<data_dir>/synthetic_raw`` (a local
  folder for a ``gs://`` data dir: ``paths.local_path``)."""
  if raw_dir:
    return Path(raw_dir).expanduser()
  return paths.local_path(data_dir_path(data_dir)) / SYNTHETIC_RAW


def download_dir(data_dir: str | Path | None) -> Path:
  """TFDS's download dir for a build into ``data_dir``: the preprocessing
  cache and skip logs, ``<data_dir>/downloads``, local for a bucket."""
  return paths.local_path(data_dir_path(data_dir)) / 'downloads'


def _download_and_prepare(builder, data_dir, raw_dir) -> None:
  """Builds from the manual dir ``raw_dir``; nothing is downloaded."""
  tfds.disable_progress_bar()  # one bar per split: the preprocessing's
  builder.download_and_prepare(
      download_dir=os.fspath(download_dir(data_dir)),
      download_config=tfds.download.DownloadConfig(
          manual_dir=str(raw_dir or ''), try_download_gcs=False))


def get_builder(dataset: str, config: base.E2EConfig, *,
                data_dir: str | Path | None = None,
                beam_options: str | None = None, **kwargs
                ) -> base.E2EBuilder:
  """The (possibly not yet prepared) builder of ``dataset`` and ``config``.

  ``beam_options`` ('k=v,k=v' Beam pipeline options, None / '' = none): its
  ``download_and_prepare`` preprocesses with Apache Beam; other ``kwargs``
  are ``base.E2EBuilder``'s (num_workers, progress, splits_dir).
  """
  return builder_class(dataset)(config=config,
                                data_dir=str(data_dir_path(data_dir)),
                                beam_options=beam_options or None, **kwargs)


def prepare(dataset: str, config: base.E2EConfig, *,
            raw_dir: str | Path | None = None,
            data_dir: str | Path | None = None,
            splits_dir: str | Path | None = None,
            num_workers: int | None = None,
            synthetic_clips: int | None = None, seed: int = 0,
            progress: bool = True,
            beam_options: str | None = None) -> base.E2EBuilder:
  """Prepares the TFDS data of ``dataset`` once; downloads nothing.

  Data already built in ``data_dir`` is reused only if it was built from what
  this call asks for: the same raw dir (when one is given) and split files
  with the same ids; otherwise a ``SourceMismatchError`` says what differs.

  Args:
    dataset: 'mosei' | 'iemocap' | 'synthetic'.
    config: the builder config (``builder_config(dataset, ...)``).
    raw_dir: the raw release (TFDS manual dir); for 'synthetic' default
      ``<data_dir>/synthetic_raw``, generated when absent.
    data_dir: TFDS data dir; default ``~/tensorflow_datasets``.
    splits_dir: folder of train.txt / valid.txt / test.txt clip ids; default
      the authors' split files (synthetic: the raw dir's own ``splits/``).
    num_workers: preprocessing processes (default: every core).
    synthetic_clips: number of generated clips (synthetic only; default:
      the generator's).
    seed: seed of the synthetic generator.
    progress: print where the data comes from and show one progress bar per
      split while preprocessing (TFDS's own bars are turned off).
    beam_options: None / '': build locally (``num_workers`` processes); else
      preprocess with Apache Beam, these pipeline options ('k=v,k=v', e.g.
      'runner=DirectRunner,direct_num_workers=4'; docs/data.md).  The same
      data and per-clip cache either way: data built with other options (or
      none) is reused.

  Returns:
    The prepared builder.
  """
  data_dir = data_dir_path(data_dir)
  builder = get_builder(dataset, config, data_dir=data_dir,
                        num_workers=num_workers, progress=progress,
                        splits_dir=splits_dir, beam_options=beam_options)
  name = f'{builder.name}/{builder.builder_config.name}'
  if builder.is_prepared():
    check_source(builder, raw_dir)
    if dataset == 'synthetic':
      check_synthetic_clips(synthetic_raw_dir(raw_dir, data_dir),
                            synthetic_clips)
    if progress:
      print(f'TFDS data {name}: {builder.data_dir}', flush=True)
    return builder
  if beam_options and paths.is_remote(data_dir):
    raise ValueError(
        f'beam_options: Beam workers share the per-clip cache in the data '
        f'dir\'s downloads/ folder, a path every worker must see; for the '
        f'bucket {data_dir} that folder is local to this machine '
        f'({download_dir(data_dir)}). Build without Beam (local processes '
        f'write the data to the bucket), or with Beam into a shared folder '
        f'and copy the result to {data_dir}.')
  if dataset == 'synthetic':
    raw_dir = synthetic_raw_dir(raw_dir, data_dir)
    write_synthetic_raw(raw_dir, num_clips=synthetic_clips, seed=seed)
  elif dataset == 'manifest':  # its files are named in it
    raw_dir = Path(builder.builder_config.manifest).expanduser().parent
  elif raw_dir is None or not Path(raw_dir).is_dir() or not any(
      Path(raw_dir).iterdir()):
    raise FileNotFoundError(missing_data_message(builder, raw_dir, data_dir))
  logging.info('Building %s from %s into %s', name, raw_dir, data_dir)
  # (Beam options, if any, come from the builder: ``get_builder``.)
  _download_and_prepare(builder, data_dir, raw_dir)
  return builder


class SourceMismatchError(ValueError):
  """Built data comes from other raw files or split files than asked for."""


def check_source(builder: base.E2EBuilder,
                 raw_dir: str | Path | None) -> None:
  """Raises ``SourceMismatchError`` if ``builder``'s data has another source.

  The raw dir is compared when one is given (a run without ``--raw_dir``
  reuses what is there); the split files always, by the ids they hold.
  """
  stored = dict(builder.info.metadata.get('source') or {})
  path = builder.data_dir
  if not stored:
    if raw_dir is not None:
      logging.warning('%s was built before sources were recorded: cannot check '
                      'that it comes from %s', path, raw_dir)
    return
  wanted = builder.source_record(raw_dir or stored['raw_dir'])
  keys = ['split_ids_sha1'] + (['raw_dir'] if raw_dir is not None else [])
  differ = [k for k in keys if stored.get(k) != wanted[k]]
  if not differ:
    return
  lines = [f'The TFDS data in {path} was built from other sources than this '
           'run asks for:']
  if 'raw_dir' in differ:
    lines.append(f'  raw dir: built from {stored["raw_dir"]}, asked for '
                 f'{wanted["raw_dir"]}')
  if 'split_ids_sha1' in differ:
    lines.append(f'  split files: built from {stored["split_files"]}, asked '
                 f'for {wanted["split_files"]} (other ids)')
  lines.append('Pass the --raw_dir / --splits_dir it was built from, or use '
               'another --data_dir for the new data (or delete '
               f'{path} to rebuild it there).')
  raise SourceMismatchError('\n'.join(lines))


@dataclasses.dataclass(frozen=True)
class FeatureRequest:
  """The baselines' feature data a run asks for.

  Attributes:
    dataset: the labels' dataset ('mosei', 'iemocap', 'manifest', or
      'synthetic': MOSEI's labels).
    features_pickle: a MulT / MMSA pickle, the authors' MOSEI or IEMOCAP
      feature folder, or comma-separated pickles (the authors' three MOSEI
      split files); the source is then 'pickle'.
    openface_dir: OpenFace 2.0 CSVs (without a pickle): the source is 'raw',
      features computed from the raw clips.
    glove_path: the raw source's word vectors ('' = MiniLM's, 384-d).
      Accepted with every source: the pickle and synthetic sources store
      their own text features and ignore it (the built data and its config
      name do not depend on it); EmoEmbs reads its emotion-word vectors
      from it whatever the source (``train.data.Data.emotion_vectors``).
    manifest: dataset 'manifest' (source raw): the manifest file.
  """
  dataset: str
  features_pickle: str = ''
  openface_dir: str = ''
  glove_path: str = ''
  manifest: str = ''

  @property
  def source(self) -> str:
    """'pickle', 'raw' or 'synthetic' (ValueError for none of them)."""
    if self.features_pickle:
      return 'pickle'
    if self.openface_dir:
      return 'raw'
    if self.dataset == 'synthetic':
      return 'synthetic'
    raise ValueError(f'dataset {self.dataset!r}: the baselines read feature '
                     'sequences; pass --features_pickle (a MulT / MMSA '
                     "pickle, or the MESM authors' MOSEI / IEMOCAP feature "
                     'folder), --openface_dir (features computed from the '
                     'raw clips, with --glove_path or the MiniLM substitute) '
                     'or use --dataset synthetic')

  @property
  def labels_of(self) -> str:
    return 'mosei' if self.dataset == 'synthetic' else self.dataset


def feature_config(request: FeatureRequest) -> features_tfds.FeaturesConfig:
  """The ``features_e2e`` builder config of a request, after checking that
  its files exist and its dataset has that source."""
  source, labels_of = request.source, request.labels_of
  # glove_path enters the data only for the raw source (its word vectors);
  # with a pickle or synthetic source it serves EmoEmbs' emotion vectors
  # alone and is left out of the config (same data, same name).
  if source == 'pickle':
    if labels_of not in ('mosei', 'iemocap'):
      raise ValueError(f'features_pickle: labels from dataset '
                       f"{request.dataset!r} are not supported (mosei, "
                       'iemocap, synthetic)')
    lacking = [p for p in request.features_pickle.split(',')
               if p.strip() and not paths.as_path(p.strip()).exists()]
    if lacking:
      raise FileNotFoundError(
          f'features_pickle: no file or folder {", ".join(lacking)} (a '
          "MulT / MMSA pickle, the MESM authors' MOSEI or IEMOCAP feature "
          'folder, or their mosei_senti_hcf_{train,valid,test}.pkl '
          'comma-separated)')
    config = features_tfds.features_config(
        'pickle', str(request.features_pickle), dataset=labels_of)
  elif source == 'raw':
    if (request.glove_path
        and not paths.as_path(request.glove_path).is_file()):
      raise FileNotFoundError(f'glove_path: no GloVe file '
                              f'{request.glove_path}')
    if labels_of not in features_tfds.RAW_DATASETS:
      raise ValueError(f'openface_dir: dataset {request.dataset!r} is not '
                       f'supported ({", ".join(features_tfds.RAW_DATASETS)}'
                       ', synthetic)')
    if labels_of == 'manifest' and not request.manifest:
      raise ValueError('dataset manifest: pass --manifest FILE')
    config = features_tfds.features_config(
        'raw', dataset=labels_of, glove_path=str(request.glove_path),
        openface_dir=str(request.openface_dir), manifest=request.manifest)
  else:
    # One feature draw (seed 0) whatever the run's seed, as the end-to-end
    # data is one build for every seed of a sweep.
    config = features_tfds.features_config('synthetic')
  for named in features_tfds.FeaturesE2e.BUILDER_CONFIGS:
    if named.name == config.name:  # TFDS wants the class's own object
      config = named
  return config


def prepare_features(request: FeatureRequest, *,
                     raw_dir: str | Path | None = None,
                     data_dir: str | Path | None = None,
                     splits_dir: str | Path | None = None,
                     synthetic_clips: int | None = None, seed: int = 0,
                     progress: bool = True) -> features_tfds.FeaturesE2e:
  """Prepares the baselines' feature-sequence data once (``features_e2e``).

  Args:
    request: what to build (``FeatureRequest``: dataset and source).  A
      pickle's features are joined with the labels of the raw data in
      ``raw_dir`` on the split files; the raw source computes them from the
      raw clips in ``raw_dir`` (a manifest: its folder), skipping and
      reporting clips that fail (``info.metadata['skip_report']``); the
      synthetic source draws them from the synthetic raw data's labels on
      its split files (the raw dir ``<data_dir>/synthetic_raw`` by default).
    raw_dir, data_dir, synthetic_clips, progress: as ``prepare``.
    splits_dir: split files (default: the authors'; synthetic: the raw
      dir's ``splits/``).
    seed: seed of the synthetic raw data when it is generated.

  Returns:
    The prepared ``features_e2e`` builder.  Data already built for the same
    request (the config name: dataset, pickle path and size, the GloVe file
    and OpenFace dir of a raw source, or the synthetic seed) is reused.
  """
  config = feature_config(request)
  data_dir = data_dir_path(data_dir)
  synthetic = request.dataset == 'synthetic'
  if request.labels_of == 'manifest':
    raw_dir = paths.as_path(request.manifest).parent
  if synthetic:
    raw_dir = synthetic_raw_dir(raw_dir, data_dir)
    splits_dir = splits_dir or raw_dir / 'splits'
  builder = features_tfds.FeaturesE2e(config=config, data_dir=str(data_dir),
                                      splits_dir=splits_dir)
  name = f'{builder.name}/{config.name}'
  if builder.is_prepared():
    _check_prepared_features(builder, request, raw_dir, synthetic_clips)
    if progress:
      print(f'TFDS data {name}: {builder.data_dir}', flush=True)
    return builder
  if synthetic:
    write_synthetic_raw(raw_dir, num_clips=synthetic_clips, seed=seed)
  elif raw_dir is None or not Path(raw_dir).is_dir():
    what = 'the clips' if request.source == 'raw' else 'the labels'
    raise FileNotFoundError(
        f'No data for {name}: {what} come from the raw {request.dataset} '
        f'data (--raw_dir), {raw_dir} is not a directory.')
  if progress:
    print(f'Building {name} (once) into {data_dir}', flush=True)
  _download_and_prepare(builder, data_dir, raw_dir)
  if progress and request.source == 'raw':
    print(skip_summary(builder), flush=True)
  return builder


def _check_prepared_features(builder, request: FeatureRequest, raw_dir,
                             synthetic_clips: int | None) -> None:
  """Built data is reused only for the same synthetic clips and raw dir."""
  if request.dataset == 'synthetic':
    check_synthetic_clips(raw_dir, synthetic_clips)
  stored = (builder.info.metadata.get('source') or {}).get('raw_dir')
  if (raw_dir is not None and stored and request.labels_of != 'manifest'
      and str(Path(raw_dir).expanduser().resolve()) != stored):
    raise SourceMismatchError(
        f'The TFDS data {builder.name}/{builder.builder_config.name} in '
        f'{builder.data_dir} was built from the raw data in {stored}, this '
        f'run asks for {raw_dir}: give another --data_dir (or delete that '
        'folder to build it again)')


def skip_summary(builder: features_tfds.FeaturesE2e) -> str:
  """One line per split: examples, skipped clips by reason, the skip log."""
  name = f'{builder.name}/{builder.builder_config.name}'
  records = builder.info.metadata.get('skip_report') or {}
  lines = [f'{name}: built from the raw clips:']
  for split in base.SPLITS:
    r = records.get(split)
    if not r:
      continue
    reasons = ', '.join(f'{k}: {v}' for k, v in r['skipped'].items())
    lines.append(f'  {split}: {r["examples"]} examples of '
                 f'{r["in_split_file"]} ids; skipped '
                 f'{sum(r["skipped"].values())} ({reasons or "none"}); '
                 f'{r["missing"]} ids not in the data')
  log = (builder.info.metadata.get('source') or {}).get('skip_log')
  if log and any((records.get(s) or {}).get('skipped') for s in base.SPLITS):
    lines.append(f'  skipped clips and why: {log}')
  return '\n'.join(lines)


def check_synthetic_clips(raw_dir: Path, num_clips: int | None) -> None:
  """Raises ValueError when the generated data in ``raw_dir`` has another
  number of clips than ``num_clips`` (None: any; no data there: fine)."""
  truth = Path(raw_dir) / 'ground_truth.json'
  if num_clips is None or not truth.is_file():
    return
  have = len(json.loads(truth.read_text()))
  if have != num_clips:
    raise ValueError(
        f'{raw_dir} holds {have} generated clips but this run asks for '
        f'{num_clips} (synthetic_clips): the synthetic data of a data dir is '
        'generated once; give another --data_dir (or delete that folder and '
        'the TFDS data built from it)')


def write_synthetic_raw(raw_dir: Path, *, num_clips: int | None,
                        seed: int) -> None:
  """Generates the synthetic MOSEI-layout raw data once (atomic rename).

  Raises:
    ValueError: ``raw_dir`` already holds generated data with another
      number of clips than ``num_clips`` (a data dir's synthetic data is
      generated once: another size needs another data dir).
  """
  if raw_dir.is_dir():
    check_synthetic_clips(raw_dir, num_clips)
    return
  raw_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix='.synthetic_raw.', dir=raw_dir.parent))
  try:
    kwargs = {} if num_clips is None else {'num_clips': num_clips}
    synthetic.write_mosei_raw(tmp, seed=seed, **kwargs)
    tmp.chmod(0o755)
    tmp.rename(raw_dir)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp)


def missing_data_message(builder: base.E2EBuilder,
                         raw_dir: str | Path | None, data_dir: Path) -> str:
  """Where the data was looked for, and how to get and build it."""
  config = builder.builder_config
  name = f'{builder.name}/{config.name}'
  looked = str(raw_dir) if raw_dir else '(none given: --raw_dir)'
  named = any(c.name == config.name for c in type(builder).BUILDER_CONFIGS)
  build = (
      f'  python -m data_pipelines.tfds build data_pipelines/tfds/'
      f'{builder.name}.py --config {config.name} --manual_dir /path/to/raw '
      f'--data_dir {data_dir}\nor pass ' if named else '  pass ')
  return (
      f'No data for {name}.\n'
      f'  Prepared TFDS data: not found in {builder.data_path}\n'
      f'  Raw data (manual dir): {looked} does not exist or is empty.\n'
      f'How to obtain and prepare it:\n'
      f'{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}\n'
      f'Then build it (raw data -> TFDS, once):\n{build}'
      f'--raw_dir /path/to/raw to experiments/run.py.')
