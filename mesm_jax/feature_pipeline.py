"""tf.data for the baselines: ``features_e2e`` clips -> static-shape batches.

The paper's baselines (LF-LSTM, LF-TRANS, MulT, EmoEmbs; ``configs.BASELINES``)
read hand-crafted feature sequences instead of faces, spectrograms and
tokens (``data_pipelines/tfds/features.py``).  Batch contract:

  text_feats float32 [B, Lt, Dt]    text_feats_mask bool [B, Lt]
  audio_feats float32 [B, La, Da]   audio_feats_mask bool [B, La]
  vision_feats float32 [B, Lv, Dv]  vision_feats_mask bool [B, Lv]
  labels float32 [B, E]      clip_mask bool [B]      clip_id string [B]

with D the widths the built data stores (``feature_dims``: the models are
built at them) and Lt, La, Lv = ``max_text_feats``, ``max_audio_feats``,
``max_vision_feats``: one static shape, no buckets.  Text keeps its first
``max_text_feats`` words; audio and vision frames are capped like faces
(``input_pipeline.cap_uniform``).  Evaluation batches keep every clip once,
training batches drop the remainder, several hosts step in lockstep: the
epoch machinery is the end-to-end pipeline's (``input_pipeline.host_epoch``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import ml_collections
import tensorflow as tf

from data_pipelines.tfds import features as tfds_features
from data_pipelines.tfds import prepare
from mesm_jax import input_pipeline

ConfigDict = ml_collections.ConfigDict
KEYS = ('text_feats', 'audio_feats', 'vision_feats')   # t, a, v


def request(config: ConfigDict) -> prepare.FeatureRequest:
  """The feature data a config asks for (its source and files)."""
  return prepare.FeatureRequest(
      dataset=config.dataset, features_pickle=config.features_pickle,
      openface_dir=config.openface_dir, glove_path=config.glove_path,
      manifest=config.manifest if config.dataset == 'manifest' else '')


def build_tfds(config: ConfigDict, *, raw_dir: str | Path | None = None,
               data_dir: str | Path | None = None,
               synthetic_clips: int | None = None,
               progress: bool = True) -> tfds_features.FeaturesE2e:
  """The prepared ``features_e2e`` data of ``config``, built once.

  The source (``prepare.FeatureRequest``): a MulT / MMSA / the authors'
  feature pickle (``features_pickle``) joined with the labels of the raw
  data (``raw_dir``) on the split files (``splits_dir``); features computed
  from the raw clips (``openface_dir``, ``glove_path``); or, for the
  synthetic dataset, features drawn from its labels.  Arguments as
  ``input_pipeline.build_tfds``.
  """
  return prepare.prepare_features(
      request(config), raw_dir=raw_dir or config.raw_dir or None,
      data_dir=data_dir or config.data_dir or None,
      splits_dir=config.splits_dir or None, synthetic_clips=synthetic_clips,
      seed=config.seed, progress=progress)


def feature_dims(builder: tfds_features.FeaturesE2e) -> Tuple[int, int, int]:
  """(text, audio, visual) feature widths the built data stores: the
  features' shapes, or for a pickle source (shapes ``[None, None]``) the
  files' widths recorded at the build (``info.metadata['feature_dims']``)."""
  features = builder.info.features
  dims = [features[k].shape[-1] for k in KEYS]
  if any(d is None for d in dims):
    stored = builder.info.metadata.get('feature_dims')
    if not stored or len(stored) != len(KEYS):
      raise ValueError(f'{builder.data_dir}: feature widths neither in the '
                       "features' shapes nor in info.metadata['feature_dims']"
                       ': build the data again')
    dims = [s if d is None else d for d, s in zip(dims, stored)]
  return tuple(int(d) for d in dims)


def feature_caps(config: ConfigDict) -> Dict[str, int]:
  """Feature key -> the static length it is capped and padded to."""
  return {'text_feats': int(config.max_text_feats),
          'audio_feats': int(config.max_audio_feats),
          'vision_feats': int(config.max_vision_feats)}


def prepare_feature_clip(ex: Dict[str, tf.Tensor], caps: Dict[str, int],
                         dims: Dict[str, int] | None = None
                         ) -> Dict[str, tf.Tensor]:
  """Caps one clip's sequences and pads them to the static caps, with masks.

  ``caps``: feature key -> largest length.  ``dims``: feature key -> width
  (``feature_dims``; needed where the stored shape leaves it open).  Text
  keeps its first words, audio and vision frames evenly spaced ones
  (``cap_uniform``).
  """
  out = {'labels': tf.cast(ex['labels'], tf.float32),
         'clip_id': ex['clip_id']}
  for key, cap in caps.items():
    x = tf.cast(ex[key], tf.float32)
    width = x.shape[-1] if dims is None else dims[key]
    x = tf.ensure_shape(x, [None, width])
    x = x[:cap] if key == 'text_feats' else input_pipeline.cap_uniform(x, cap)
    n = tf.shape(x)[0]
    out[key] = tf.ensure_shape(input_pipeline.pad_rows(x, cap), [cap, width])
    out[f'{key}_mask'] = tf.range(cap) < n
  return out


def make_dataset(config: ConfigDict, split: str, *, train: bool,
                 builder: tfds_features.FeaturesE2e | None = None,
                 data_dir: str | Path | None = None,
                 **epoch_kwargs) -> tf.data.Dataset:
  """One epoch of static-shape feature batches of this host's ``split``.

  As ``input_pipeline.make_dataset`` (the same arguments, ``host_epoch``'s
  epoch rules), with the feature contract of this module's doc.
  """
  builder = builder or build_tfds(config, data_dir=data_dir, progress=False)
  caps = feature_caps(config)
  dims = dict(zip(KEYS, feature_dims(builder)))

  def batches(ds, batch_size, seed):
    ds = ds.map(lambda ex: prepare_feature_clip(ex, caps, dims),
                num_parallel_calls=tf.data.AUTOTUNE)
    if train:
      ds = ds.shuffle(config.shuffle_buffer, seed=seed,
                      reshuffle_each_iteration=False)
    return ds.batch(batch_size, drop_remainder=train)
  return input_pipeline.host_epoch(
      config, builder, split, train=train, batches=batches,
      finish=input_pipeline.pad_batch, shapes=[(0, 0)], **epoch_kwargs)
