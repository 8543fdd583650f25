"""The training loop's view of the input pipeline of its model family.

One path per model family: FE2E and MESM read clips through
``mesm_jax.input_pipeline``, the baselines (``configs.BASELINES``) feature
sequences through ``mesm_jax.feature_pipeline`` (``pipeline(config)``, the
one place that chooses).  Both have the same ``build_tfds`` and
``make_dataset``; this module wraps them into what the loop needs: numpy batches of one host's share for an epoch (from a given batch,
for resuming), evaluation batches, the training labels (for the positive
weights) and the emotion names.

The number of training batches of an epoch is not ``clips // batch``: train
batches are grouped by length bucket and each bucket drops its remainder, so
the loop learns it by counting (``last`` below) instead of predicting it.
"""

from typing import Dict, Iterator, Optional, Tuple

import jax
import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import features
from data_pipelines.tfds import prepare
from mesm_jax import configs
from mesm_jax import feature_pipeline
from mesm_jax import input_pipeline



class Data:
  """The prepared TFDS dataset of ``config.dataset`` and batches from it."""

  def __init__(self, config, process_index: Optional[int] = None,
               process_count: Optional[int] = None):
    self.config = config
    self.process_index = (jax.process_index() if process_index is None
                          else process_index)
    self.process_count = (jax.process_count() if process_count is None
                          else process_count)
    # The baselines read feature sequences (features_e2e), FE2E / MESM clips.
    self.pipeline = pipeline(config)
    self.builder = build(config)

  def emotions(self) -> Tuple[str, ...]:
    """The label names, in label-vector order; checks ``num_emotions``."""
    stored = int(self.builder.info.features['labels'].shape[0])
    if stored != self.config.num_emotions:
      raise ValueError(
          f'the TFDS data {self.builder.data_dir} has {stored} labels per clip '
          f'but num_emotions is {self.config.num_emotions}: pass '
          f'--num_emotions {stored}')
    names = tuple(self.builder.info.metadata.get('emotions', ()))
    if len(names) != stored:  # data built before the names were stored
      names = prepare.EMOTION_NAMES.get(self.config.dataset, ())
    if len(names) != stored:
      names = tuple(f'emotion{i}' for i in range(stored))
    return names

  def multi_label(self) -> bool:
    """Several labels per clip (MOSEI-like) or exactly one (IEMOCAP-like)."""
    meta = self.builder.info.metadata
    if 'multi_label' in meta:
      return bool(meta['multi_label'])
    return self.config.dataset != 'iemocap'

  def metric_set(self) -> str:
    """The paper's metrics that fit the labels: MOSEI's or IEMOCAP's."""
    return 'mosei' if self.multi_label() else 'iemocap'

  def num_examples(self, split: str) -> int:
    return int(self.builder.info.splits[split].num_examples)

  def _dataset(self, split: str, train: bool, batch: int, epoch: int = 0,
               skip: int = 0):
    return self.pipeline.make_dataset(
        self.config, split, train=train, global_batch_size=batch,
        seed=self.config.seed, epoch=epoch, process_index=self.process_index,
        process_count=self.process_count, skip_batches=skip,
        builder=self.builder)

  def train_batches(self, epoch: int, skip: int = 0
                    ) -> Iterator[Tuple[Dict[str, np.ndarray], bool]]:
    """(batch, is_last) of one epoch in the order fixed by seed and epoch."""
    ds = self._dataset('train', True, self.config.batch_size, epoch, skip)
    return with_last(ds.as_numpy_iterator())

  def eval_batches(self, split: str, batch_size: int
                   ) -> Iterator[Dict[str, np.ndarray]]:
    """Every clip of ``split`` once, padded batches marked by ``clip_mask``.

    ``batch_size`` is the global evaluation batch: the loop's, fitted to its
    devices (``config.eval_batch_size`` rounded up), not the config's.
    """
    ds = self._dataset(split, False, batch_size)
    return ds.as_numpy_iterator()

  def train_labels(self) -> Iterator[np.ndarray]:
    """Labels of every training clip (faces and audio left undecoded)."""
    skip = tfds.decode.SkipDecoding()
    heavy = (feature_pipeline.KEYS if self.pipeline is feature_pipeline
             else ('faces', 'spec'))
    ds = self.builder.as_dataset(split='train', decoders={
        key: skip for key in heavy})
    ds = ds.map(lambda ex: ex['labels']).batch(1024)
    return ds.as_numpy_iterator()

  def feature_dims(self) -> Optional[Tuple[int, int, int]]:
    """A baseline's (text, audio, visual) feature widths, those of the built
    data, which its model is built at; None for FE2E and MESM."""
    if self.pipeline is not feature_pipeline:
      return None
    return feature_pipeline.feature_dims(self.builder)

  def emotion_vectors(self) -> Tuple[np.ndarray, str]:
    """EmoEmbs' frozen emotion embeddings ``[E, G]`` and where they are from.

    The emotion words (``emotion_words``) get their GloVe vectors from
    ``glove_path`` (G = 300; a word GloVe lacks, as written or lowercased,
    is an error), or without one the MiniLM input-embedding substitute
    (``features.minilm_input_embeddings``, G = 384), the project's text
    vectors when GloVe is absent.
    """
    words = emotion_words(self.config.dataset, self.emotions())
    path = self.config.glove_path
    if path:
      table = features.load_glove(path, words)
      missing = [w for w in words if w not in table and w.lower() not in table]
      if missing:
        raise ValueError(f'glove_path {path}: no vector for the emotion '
                         f'words {missing}')
      vectors = features.glove_lookup(words, table)
      source = f'GloVe ({path})'
    else:
      vectors = np.stack([features.minilm_input_embeddings([w])[0]
                          for w in words])
      source = ('the MiniLM input embeddings (no --glove_path; the '
                "original: GloVe 840B)")
    note = (f'EmoEmbs: frozen emotion embeddings {vectors.shape} of the '
            f'words {list(words)} from {source}')
    return vectors.astype(np.float32), note

  def sample_batch(self, batch_size: int) -> Dict[str, np.ndarray]:
    """One evaluation batch, to initialise the model's shapes."""
    return next(self.eval_batches('valid', batch_size))


# EmoEmbs' emotion words per label name, as Modality-Transferable-MER
# (src/config.py EMOTIONS) spells them: MOSEI 'mosei_emo' (anger, disgust,
# fear, happy, sad, surprise), IEMOCAP 'iemocap9' (angry, exciting,
# frustrating, happy, neutral, sad for the paper's six).  Other datasets
# (manifest) use their label names.
EMOTION_WORDS = {
    'mosei': {'anger': 'anger', 'disgust': 'disgust', 'fear': 'fear',
              'happiness': 'happy', 'sadness': 'sad', 'surprise': 'surprise'},
    'iemocap': {'anger': 'angry', 'excited': 'exciting',
                'frustrated': 'frustrating', 'happy': 'happy',
                'neutral': 'neutral', 'sad': 'sad'},
}
EMOTION_WORDS['synthetic'] = EMOTION_WORDS['mosei']   # MOSEI's labels


def emotion_words(dataset: str, emotions) -> Tuple[str, ...]:
  """The word of each emotion name (``EMOTION_WORDS``; else the name)."""
  table = EMOTION_WORDS.get(dataset, {})
  return tuple(table.get(e, e) for e in emotions)


def pipeline(config):
  """The input pipeline module of the config's model family."""
  return (feature_pipeline if configs.is_baseline(config)
          else input_pipeline)


def build(config, progress: bool = True):
  """``config``'s prepared TFDS data (built once), as training reads it.

  The pipeline's ``build_tfds`` with the config's raw and data dirs and, for
  the synthetic dataset, its ``synthetic_clips``; the baselines get their
  ``features_e2e`` data.
  """
  return pipeline(config).build_tfds(config, progress=progress,
                                     **synthetic_kwargs(config))


def synthetic_kwargs(config) -> Dict[str, int]:
  """``synthetic_clips`` for the generated dataset when the config sets it."""
  clips = config.get('synthetic_clips', 0)
  return {'synthetic_clips': clips} if config.dataset == 'synthetic' and clips \
      else {}


def with_last(iterator):
  """Yields ``(item, is_last)`` by looking one item ahead."""
  it = iter(iterator)
  try:
    current = next(it)
  except StopIteration:
    return
  for nxt in it:
    yield current, False
    current = nxt
  yield current, True
