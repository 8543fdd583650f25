"""Shared TFDS builder for the end-to-end emotion datasets (MOSEI, IEMOCAP).

One example is one utterance clip, stored close to the raw signal so that the
training side's tf.data pipeline only caps, pads and normalises:

  faces      uint8   [F, 48, 48, 3]  RGB face crops, one per img_interval ms
  spec       float16 [C, 128, 32]    mel-spectrogram chunks (mel x time)
  text       string                  the transcript
  text_ids   int32   [L]             token ids of the config's tokenizer
  text_mask  int32   [L]             1 = real token
  labels     float32 [E]             multi-hot emotions (E = 6)
  clip_id    string
  n_frames, n_chunks, face_fallbacks int32

F and C vary per clip (no cap at build time); L is ``text_max_len`` of the
builder config.  The heavy work (video decoding, face detection, mel
spectrograms) is done by ``data_pipelines.preprocess.iter_examples``, which
keeps a per-clip cache so an interrupted build resumes.  Built with Beam
pipeline options (``DownloadConfig(beam_options=...)``, ``tfds build
--beam_pipeline_options ...``), the same per-clip function and cache run as
an Apache Beam transform instead (``data_pipelines.beam``), with the same
examples and the same skip report (``info.metadata['skip_report']``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import paths
from data_pipelines import preprocess
from data_pipelines import readers
from data_pipelines import text

FACE_SIZE = 48
N_MELS = 128
CHUNK_FRAMES = 32
# TFDS's warnings that every first run here prints and that ask nothing of the
# user: the builder config of a run (the whole E2EConfig), the version folder
# of data not built yet (it is built next), and TFDS's own use of a
# deprecated FeatureConnector field.  Every other TFDS warning is kept.
EXPECTED_TFDS_WARNINGS = ('Using custom data configuration',
                          'Variant folder ',
                          '`FeatureConnector.dtype` is deprecated')


class ExpectedTfdsWarnings(logging.Filter):
  """Drops the log records of ``EXPECTED_TFDS_WARNINGS``."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.getMessage()).startswith(EXPECTED_TFDS_WARNINGS)


def quiet_expected_tfds_warnings() -> None:
  """Installs ``ExpectedTfdsWarnings`` on absl's logger (once)."""
  logger = logging.getLogger('absl')
  if not any(isinstance(f, ExpectedTfdsWarnings) for f in logger.filters):
    logger.addFilter(ExpectedTfdsWarnings())


quiet_expected_tfds_warnings()  # data_pipelines builds and reads TFDS data

NUM_EMOTIONS = 6
SPLITS = ('train', 'valid', 'test')
CITATION = """\
@inproceedings{dai-etal-2021-multimodal,
  title = {Multimodal End-to-End Sparse Model for Emotion Recognition},
  author = {Dai, Wenliang and Cahyawijaya, Samuel and Liu, Zihan and
            Fung, Pascale},
  booktitle = {Proceedings of NAACL-HLT 2021},
  pages = {5305--5316},
  year = {2021},
}"""


@dataclasses.dataclass(eq=False)
class E2EConfig(tfds.core.BuilderConfig):
  """What changes the stored examples: tokenizer, frame rate, mel, detector.

  Attributes:
    text_model: tokenizer name for ``data_pipelines.text.get_tokenizer``
      ('albert-base-v2' | 'minilm' | 'scratch' | a checkpoint dir).
    text_checkpoint: explicit Hugging Face checkpoint dir (overrides name).
    scratch_vocab_size: vocabulary of the 'scratch' tokenizer.
    text_max_len: L, token ids are padded or cut to this length.
    img_interval: ms between sampled video frames.
    log_mel: store log(mel + 1e-6) instead of the power mel (quirk 5 off).
    face_detector: 'mtcnn' (paper) | 'center' (centre crop, fast, tests).
    synthetic: the manual dir holds generated data (``synthetic.write_*_raw``)
      whose own split files (``<manual_dir>/splits``) are used.
    text_rule: IEMOCAP transcripts: 'last_colon' (the original's rule, quirk
      6) | 'full'.  Ignored for MOSEI.
    manifest: the manifest dataset's CSV / JSONL file ('' for the others);
      the config's name holds a hash of its contents.
  """
  text_model: str = 'albert-base-v2'
  text_checkpoint: str = ''
  scratch_vocab_size: int = 30522
  text_max_len: int = 100
  img_interval: int = 500
  log_mel: bool = False
  face_detector: str = 'mtcnn'
  synthetic: bool = False
  text_rule: str = 'last_colon'
  manifest: str = ''

  def tokenizer(self) -> text.tokenizer.TextTokenizer:
    """The tokeniser whose ids this config stores."""
    return text.get_tokenizer(self.text_model, self.text_checkpoint,
                              self.scratch_vocab_size)

  def same_data(self, other: 'E2EConfig') -> bool:
    """True when both configs produce the same stored examples."""
    fields = [f.name for f in dataclasses.fields(E2EConfig)
              if f.name not in _META_FIELDS]
    return all(getattr(self, f) == getattr(other, f) for f in fields)


_META_FIELDS = ('name', 'version', 'release_notes', 'supported_versions',
                'description', 'tags')


def config_name(c: E2EConfig) -> str:
  """A readable, unique name for a config that is not one of the named ones."""
  text = c.text_model if not c.text_checkpoint else 'ckpt'
  text = ''.join(ch if ch.isalnum() else '_' for ch in text)
  if c.text_model == 'scratch':
    text += f'_v{c.scratch_vocab_size}'
  if c.text_checkpoint or os.sep in c.text_model:
    path = c.text_checkpoint or c.text_model
    text += '_' + hashlib.sha1(path.encode()).hexdigest()[:8]
  mel = 'logmel' if c.log_mel else 'powmel'
  prefix = 'synthetic-' if c.synthetic else ''
  suffix = '' if c.text_rule == 'last_colon' else f'-text_{c.text_rule}'
  if c.manifest:  # other manifest contents: other data
    path = Path(c.manifest).expanduser()
    stem = ''.join(ch if ch.isalnum() else '_' for ch in path.stem)
    prefix += f'{stem}_{hashlib.sha1(path.read_bytes()).hexdigest()[:8]}-'
  return (f'{prefix}{text}-L{c.text_max_len}-i{c.img_interval}-{mel}-'
          f'{c.face_detector}{suffix}')


def named_configs(synthetic: E2EConfig) -> list[E2EConfig]:
  """The BUILDER_CONFIGS shared by both datasets (+ a dataset's synthetic)."""
  paper = dict(text_model='albert-base-v2', text_max_len=100)
  return [
      E2EConfig(name='albert', description='Paper: ALBERT base v2 tokens '
                '(L=100), 500 ms frames, power mel, MTCNN faces.', **paper),
      E2EConfig(name='albert_logmel', log_mel=True,
                description='As albert, log(mel + 1e-6) spectrogram.', **paper),
      E2EConfig(name='albert_img7500', img_interval=7500,
                description='As albert, one frame per 7.5 s (the original '
                "loader's effective MOSEI rate, quirk 4).", **paper),
      E2EConfig(name='minilm', text_model='minilm', text_max_len=100,
                description='Bundled offline MiniLM tokenizer (L=100).'),
      synthetic,
  ]


class E2EBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of ``mosei_e2e`` and ``iemocap_e2e``; subclasses set DATASET."""

  DATASET: str = ''            # 'mosei' | 'iemocap' | 'manifest'
  EMOTIONS: tuple[str, ...] = ()
  MULTI_LABEL: bool = True     # several emotions per clip (MOSEI) or one
  CITATION: str = ''           # the dataset's own reference, appended
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  def __init__(self, *, num_workers: int | None = None,
               progress: bool = True, splits_dir: str | Path | None = None,
               beam_options: Any = None, **kwargs):
    """As a TFDS builder, and how to build.

    Args:
      num_workers: preprocessing processes (default: every core).
      progress: show a progress bar per split while preprocessing.
      splits_dir: folder of train.txt / valid.txt / test.txt (clip ids, one
        a line) to build from; default the authors' (shipped) split files,
        for a synthetic config ``<manual_dir>/splits``.
      beam_options: build with Apache Beam: pipeline options as
        'runner=DirectRunner,direct_num_workers=4' or ``PipelineOptions``,
        used when ``download_and_prepare`` gets none; None / '': locally
        with ``num_workers`` processes (unless the download config has Beam
        options).  Not part of the data: every runner builds the same.
      **kwargs: ``tfds.core.GeneratorBasedBuilder``'s (config, data_dir).
    """
    self._num_workers = num_workers
    self._progress = progress
    self._splits_dir = splits_dir
    self._beam_options = beam_options or None
    self._beam = False          # this build runs on Apache Beam
    self._beam_splits: dict[str, Any] = {}
    super().__init__(**kwargs)

  def label_names(self) -> tuple[str, ...]:
    """The order of the label vector (a manifest's own label set)."""
    return tuple(self.EMOTIONS)

  def multi_label(self) -> bool:
    return self.MULTI_LABEL

  def reader_source(self, raw_dir: Path) -> Path:
    """What ``preprocess.iter_examples`` reads: the raw dir (a manifest)."""
    return raw_dir

  def splits_dir_for(self, raw_dir: Path) -> Path | None:
    """The split files a build from ``raw_dir`` reads (None: shipped)."""
    if self._splits_dir:
      return Path(self._splits_dir).expanduser()
    return raw_dir / 'splits' if self.builder_config.synthetic else None

  def source_files(self, splits_dir: Path | None) -> list[Path]:
    """The files that say which clips go to which split."""
    return split_files(self.DATASET, splits_dir)

  def source_record(self, raw_dir: str | Path) -> dict[str, str]:
    """What a build from ``raw_dir`` reads: its source and split contents.

    Stored in the built data's metadata (``info.metadata['source']``) and
    compared with what a later run asks for (``prepare.check_source``).
    """
    raw_dir = Path(raw_dir).expanduser()
    splits = self.splits_dir_for(raw_dir)
    digest = hashlib.sha1()
    for path in self.source_files(splits):
      digest.update(path.read_bytes())
    return {'raw_dir': str(self.reader_source(raw_dir).resolve()),
            'split_files': str(splits.resolve()) if splits else 'shipped',
            'split_ids_sha1': digest.hexdigest()}

  def _log_download_bytes(self) -> None:
    # TFDS would print "Downloading and preparing dataset Unknown size": the
    # data comes from the manual dir, nothing is downloaded.
    if self._progress:
      print(f'Building {self.name}/{self.builder_config.name} (once) into '
            f'{self.data_dir}', flush=True)

  def _download_and_prepare(self, dl_manager: tfds.download.DownloadManager,
                            download_config: tfds.download.DownloadConfig
                            ) -> None:
    # Beam options (or a runner) given: the splits are Beam transforms.
    if self._beam_options and download_config.beam_options is None and (
        download_config.beam_runner is None):
      from data_pipelines import beam as dp_beam  # pylint: disable=g-import-not-at-top
      download_config = dataclasses.replace(
          download_config,
          beam_options=dp_beam.pipeline_options(self._beam_options))
    self._beam = (download_config.beam_options is not None or
                  download_config.beam_runner is not None)
    self._beam_splits = {}
    if self._beam and self._progress:
      print(f'{self.name}/{self.builder_config.name}: preprocessing with '
            'Apache Beam', flush=True)
    super()._download_and_prepare(dl_manager=dl_manager,
                                  download_config=download_config)

  def _log_download_done(self) -> None:
    if self._progress:
      print(f'Built {self.name}/{self.builder_config.name}: later runs read '
            f'it from {self.data_dir}', flush=True)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    tensor = tfds.features.Tensor
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'clip_id': tfds.features.Text(),
            'text': tfds.features.Text(doc='transcript of the clip'),
            'text_ids': tensor(shape=(c.text_max_len,), dtype=np.int32),
            'text_mask': tensor(shape=(c.text_max_len,), dtype=np.int32),
            'faces': tensor(
                shape=(None, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8,
                encoding='bytes', doc='RGB face crops, 0..255'),
            'spec': tensor(shape=(None, N_MELS, CHUNK_FRAMES),
                           dtype=np.float16, encoding='bytes',
                           doc='mel chunks (mel x time)'),
            'labels': tensor(shape=(len(self.label_names()),),
                             dtype=np.float32,
                             doc=('multi-hot: ' if self.multi_label() else
                                  'one-hot: ') + ', '.join(self.label_names())),
            'n_frames': tensor(shape=(), dtype=np.int32),
            'n_chunks': tensor(shape=(), dtype=np.int32),
            'face_fallbacks': tensor(shape=(), dtype=np.int32),
        }),
        supervised_keys=None,
        homepage='https://aclanthology.org/2021.naacl-main.417/',
        citation=CITATION + self.CITATION,
        metadata=tfds.core.MetadataDict(emotions=list(self.label_names()),
                                        multi_label=self.multi_label()),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    raw_dir = Path(dl_manager.manual_dir)
    # A gs:// download dir (``tfds build --data_dir gs://...``) gets a local
    # folder: the cache is written with local file operations.
    cache_dir = paths.local_path(dl_manager.download_dir) / (
        'preprocess_cache') / self._cache_key(raw_dir)
    splits_dir = self.splits_dir_for(raw_dir)
    if splits_dir is not None and not splits_dir.is_dir():
      raise FileNotFoundError(
          f'{self.name}/{self.builder_config.name}: the split files folder '
          f'{splits_dir} does not exist (a synthetic raw dir holds its own '
          f'splits/; generate it with '
          f'data_pipelines.synthetic.write_{self.DATASET}_raw).')
    self.info.metadata['source'] = self.source_record(raw_dir)
    return {split: self._generate_examples(raw_dir, split, cache_dir,
                                           splits_dir) for split in SPLITS}

  def _cache_key(self, raw_dir: Path) -> str:
    """One cache per raw dir; preprocess keys its entries by its settings.

    Tokenizers do not enter the key: every text model reuses the faces and
    spectrograms computed once.
    """
    digest = hashlib.sha1(str(raw_dir.resolve()).encode()).hexdigest()[:10]
    return f'{self.DATASET}-{digest}'

  def _generate_examples(self, raw_dir: Path, split: str, cache_dir: Path,
                         splits_dir: Path | None):
    """(clip_id, example) pairs: an iterator, or a Beam PTransform."""
    if self._beam:
      return self._beam_examples(raw_dir, split, cache_dir, splits_dir)
    return self._local_examples(raw_dir, split, cache_dir, splits_dir)

  def _converter(self) -> 'ToTfds':
    c = self.builder_config
    return ToTfds(c.text_model, c.text_checkpoint, c.scratch_vocab_size,
                  c.text_max_len, len(self.label_names()))

  def _beam_examples(self, raw_dir: Path, split: str, cache_dir: Path,
                     splits_dir: Path | None):
    """The Beam path: the per-clip function of ``_local_examples`` and its
    cache as a PTransform (``data_pipelines.beam``); its report is collected
    in ``_process_pipeline_result``."""
    from data_pipelines import beam as dp_beam  # pylint: disable=g-import-not-at-top
    c = self.builder_config
    convert = self._converter()
    convert.tokenizer()     # a missing tokenizer fails here, not on workers
    transform = dp_beam.examples_transform(
        self.DATASET, self.reader_source(raw_dir), split, cache_dir=cache_dir,
        img_interval=c.img_interval, log_mel=c.log_mel,
        face_detector=c.face_detector, splits_dir=splits_dir,
        text_rule=c.text_rule, convert=convert)
    self._beam_splits[split] = (transform, raw_dir, splits_dir, cache_dir)
    return transform

  def _process_pipeline_result(self, pipeline_result) -> None:
    """After a Beam build: the skip report of every split (as locally)."""
    super()._process_pipeline_result(pipeline_result)
    for split, (transform, raw_dir, splits_dir, cache_dir) in (
        self._beam_splits.items()):
      report = transform.finish()
      self._record_report(report)
      if not report.yielded:
        raise ValueError(no_clip_message(
            f'{self.name}/{self.builder_config.name}', split, raw_dir,
            splits_dir, cache_dir, report))

  def _record_report(self, report: preprocess.SkipReport) -> None:
    """Stores what a split's preprocessing skipped in the dataset info."""
    records = dict(self.info.metadata.get('skip_report') or {})
    records[report.split] = skip_record(report)
    self.info.metadata['skip_report'] = records

  def _local_examples(self, raw_dir: Path, split: str, cache_dir: Path,
                      splits_dir: Path | None
                      ) -> Iterator[tuple[str, dict[str, Any]]]:
    c = self.builder_config
    convert = self._converter()
    options = {'text_rule': c.text_rule} if self.DATASET == 'iemocap' else {}
    report = preprocess.SkipReport()
    examples = preprocess.iter_examples(
        self.DATASET, self.reader_source(raw_dir), split, cache_dir=cache_dir,
        img_interval=c.img_interval, log_mel=c.log_mel,
        face_detector=c.face_detector, splits_dir=splits_dir,
        num_workers=self._num_workers, progress=self._progress,
        report=report, **options)
    count = 0
    for clip_id, ex in examples:
      count += 1
      yield clip_id, convert(clip_id, ex)
    self._record_report(report)
    if not count:
      raise ValueError(no_clip_message(
          f'{self.name}/{c.name}', split, raw_dir, splits_dir, cache_dir,
          report))


def skip_record(report: preprocess.SkipReport) -> dict[str, Any]:
  """What ``info.metadata['skip_report'][split]`` holds (local = Beam)."""
  return {'in_split_file': report.in_split_file,
          'examples': report.yielded,
          'missing': len(report.missing),
          'skipped': dict(sorted(report.skipped.items())),
          'skipped_ids': list(report.skipped_ids)}


class ToTfds:
  """Preprocessed example -> TFDS example; a picklable Beam step too (the
  tokenizer is built once per unpickled copy, i.e. per Beam worker)."""

  def __init__(self, text_model: str, text_checkpoint: str,
               scratch_vocab_size: int, text_max_len: int,
               num_labels: int = NUM_EMOTIONS):
    self.tokenizer_args = (text_model, text_checkpoint, scratch_vocab_size)
    self.text_max_len, self.num_labels = text_max_len, num_labels
    self._tokenizer = None

  def tokenizer(self) -> text.tokenizer.TextTokenizer:
    if self._tokenizer is None:
      self._tokenizer = text.get_tokenizer(*self.tokenizer_args)
    return self._tokenizer

  def __getstate__(self) -> dict[str, Any]:
    return {**self.__dict__, '_tokenizer': None}

  def __call__(self, clip_id: str, ex: dict[str, Any]) -> dict[str, Any]:
    return to_tfds_example(clip_id, ex, self.tokenizer(), self.text_max_len,
                           self.num_labels)


def split_files(dataset: str, splits_dir: Path | None) -> list[Path]:
  """The train / valid / test files a build reads (shipped if None)."""
  return [readers.split_file(dataset, s, splits_dir) for s in SPLITS]


def no_clip_message(name: str, split: str, raw_dir: Path,
                    splits_dir: Path | None, cache_dir: Path,
                    report: preprocess.SkipReport) -> str:
  """Why a split has no usable clip: ids not in the data, or all skipped."""
  where = splits_dir or 'the shipped split files'
  lines = [f'{name}: no usable clip in split {split!r} of {raw_dir} '
           f'(split file from {where}).',
           f'  {report.in_split_file} ids in the split file; '
           f'{len(report.missing)} of them are not in the raw data; '
           f'{sum(report.skipped.values())} skipped'
           f'{" " + str(dict(report.skipped)) if report.skipped else ""}.']
  if report.missing and len(report.missing) == report.in_split_file:
    found = sorted({p.stem for p in raw_dir.rglob('*') if p.suffix.lower() in (
        '.mp4', '.avi', '.wav', '.txt') and p.parent.name != 'splits'})
    lines += [f'  None of the split ids is in the raw data: split ids '
              f'{report.missing[:5]}, files in {raw_dir}: {found[:5]}.',
              '  Are these the right split files? Give your own with '
              '--splits_dir DIR (train.txt, valid.txt, test.txt).']
  if report.skipped:
    lines.append(f'  The skipped clips and why: '
                 f'{cache_dir / preprocess.SKIP_LOG}')
  return '\n'.join(lines)


def to_tfds_example(clip_id: str, ex: dict[str, Any], tokenizer,
                    text_max_len: int,
                    num_labels: int = NUM_EMOTIONS) -> dict[str, Any]:
  """Checks one preprocessed example and adds its token ids."""
  check_example(clip_id, ex, num_labels)
  ids, mask = tokenizer.encode([ex['text']], text_max_len)
  ids, mask = np.asarray(ids), np.asarray(mask)
  if ids.shape != (1, text_max_len) or mask.shape != (1, text_max_len):
    raise ValueError(f'clip {clip_id}: tokenizer returned ids {ids.shape}, '
                     f'mask {mask.shape}; expected (1, {text_max_len})')
  return {
      'clip_id': clip_id,
      'text': ex['text'],
      'text_ids': ids[0].astype(np.int32),
      'text_mask': mask[0].astype(np.int32),
      'faces': ex['faces'],
      'spec': ex['spec'],
      'labels': np.asarray(ex['labels'], np.float32),
      'n_frames': np.int32(ex['n_frames']),
      'n_chunks': np.int32(ex['n_chunks']),
      'face_fallbacks': np.int32(ex['face_fallbacks']),
  }


def check_example(clip_id: str, ex: dict[str, Any],
                  num_labels: int = NUM_EMOTIONS) -> None:
  """Raises a ValueError naming the clip when an example breaks the contract."""
  expected = {
      'faces': (np.uint8, (FACE_SIZE, FACE_SIZE, 3)),
      'spec': (np.float16, (N_MELS, CHUNK_FRAMES)),
  }
  for key, (dtype, inner) in expected.items():
    arr = ex.get(key)
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or (
        arr.shape[1:] != inner) or arr.shape[0] < 1:
      got = (arr.dtype, arr.shape) if isinstance(arr, np.ndarray) else arr
      raise ValueError(f'clip {clip_id}: {key} must be {np.dtype(dtype)} '
                       f'[n>=1, {", ".join(map(str, inner))}], got {got}')
  counts = {'n_frames': ex['faces'].shape[0], 'n_chunks': ex['spec'].shape[0]}
  for key, n in counts.items():
    if int(ex.get(key, -1)) != n:
      raise ValueError(f'clip {clip_id}: {key}={ex.get(key)} but the array '
                       f'holds {n}')
  labels = np.asarray(ex.get('labels'))
  if labels.shape != (num_labels,):
    raise ValueError(f'clip {clip_id}: labels shape {labels.shape}, expected '
                     f'({num_labels},)')
  if not isinstance(ex.get('text'), str):
    raise ValueError(f'clip {clip_id}: text must be a str, got '
                     f'{type(ex.get("text")).__name__}')
