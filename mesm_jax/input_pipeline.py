"""tf.data input pipeline: TFDS clips -> fixed-shape, masked batches.

Axis letters: B clips (per host), F face frames, C spectrogram chunks,
L tokens, E emotions.  Batch contract (docs/design.md):

  text_ids int32 [B, L]      text_mask int32 [B, L]
  faces float32 [B, F, 48, 48, 3]   face_mask bool [B, F]
  spec float32 [B, C, 128, 32]      spec_mask bool [B, C]
  labels float32 [B, E]      clip_mask bool [B]      clip_id string [B]

The baselines read feature sequences instead: ``mesm_jax.feature_pipeline``
(the same epoch machinery, ``host_epoch``).

Rules (docs/input_pipeline.md):
  * Cap: a clip with more than ``max_frames`` frames keeps ``max_frames`` of
    them, uniformly spaced over the clip (frame i of the kept ones is the
    centre of the i-th of ``max_frames`` equal segments); chunks the same with
    ``max_chunks``.  Both modalities keep covering the whole utterance.
  * Buckets: a clip goes to the smallest bucket (F_k, C_k) that holds it, with
    F_k = ceil(max_frames * r_k), C_k = ceil(max_chunks * r_k) and
    r = BUCKET_FRACTIONS = (1/4, 1/2, 1): three static shapes per run.
  * Eval batches keep every clip exactly once: the last batch of each bucket
    is padded with clip_mask=False clips.  Train batches drop the remainder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import jax
import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines.tfds import base as tfds_base
from data_pipelines.tfds import prepare

FACE_MEAN = (159.0, 111.0, 102.0)
FACE_STD = (37.0, 33.0, 32.0)
BUCKET_FRACTIONS = (0.25, 0.5, 1.0)

ConfigDict = ml_collections.ConfigDict


# --------------------------------------------------------------------------
# The TFDS data of a config (built by data_pipelines.tfds.prepare).


def builder_config(config: ConfigDict,
                   face_detector: str | None = None) -> tfds_base.E2EConfig:
  """The TFDS builder config storing the data ``config`` trains on."""
  return prepare.builder_config(
      config.dataset, text_model=config.text_model,
      text_checkpoint=config.text_checkpoint,
      scratch_vocab_size=config.scratch_vocab_size,
      text_max_len=config.text_max_len, img_interval=config.img_interval,
      log_mel=config.log_mel,
      face_detector=face_detector or config.face_detector,
      text_rule=config.text_rule,
      manifest=config.manifest if config.dataset == 'manifest' else '')


def build_tfds(config: ConfigDict, *, raw_dir: str | Path | None = None,
               data_dir: str | Path | None = None,
               face_detector: str | None = None,
               num_workers: int | None = None,
               synthetic_clips: int | None = None,
               progress: bool = True) -> tfds_base.E2EBuilder:
  """The prepared TFDS data of ``config``, built once from the raw files.

  Args:
    config: a mesm_jax config (dataset, the data fields of
      ``builder_config``, data_dir, raw_dir, seed and beam_options are
      read; ``beam_options`` non-empty: preprocess with Apache Beam, the
      same data).
    raw_dir: the raw release (TFDS manual dir); default ``config.raw_dir``,
      for 'synthetic' ``<data_dir>/synthetic_raw`` (generated when absent).
      Data already built from another raw dir or other split files
      (``config.splits_dir``) is not reused: ``prepare.SourceMismatchError``.
    data_dir: TFDS data dir; default ``config.data_dir`` or
      ``~/tensorflow_datasets``.
    face_detector: 'mtcnn' | 'center'; default ``config.face_detector``.
    num_workers: preprocessing processes (default: every core).
    synthetic_clips: number of generated clips (synthetic only).
    progress: show progress bars while preprocessing.

  Returns:
    The prepared builder (``data_pipelines.tfds.prepare.prepare``).
  """
  return prepare.prepare(
      config.dataset, builder_config(config, face_detector),
      raw_dir=raw_dir or config.raw_dir or None,
      data_dir=data_dir or config.data_dir or None,
      splits_dir=config.splits_dir or None, num_workers=num_workers,
      synthetic_clips=synthetic_clips, seed=config.seed, progress=progress,
      beam_options=config.get('beam_options') or None)


# --------------------------------------------------------------------------
# Per-clip rules (pure TF, also used eagerly in tests).


def bucket_shapes(max_frames: int, max_chunks: int,
                  fractions=BUCKET_FRACTIONS) -> list[tuple[int, int]]:
  """The static (F, C) shapes of the length buckets, smallest first."""
  shapes = {(max(1, math.ceil(max_frames * r)), max(1, math.ceil(
      max_chunks * r))) for r in fractions}
  return sorted(shapes)


def cap_uniform(x: tf.Tensor, cap: int) -> tf.Tensor:
  """Keeps at most ``cap`` rows of x, uniformly spaced over all rows.

  Row i of the result (n > cap) is row floor((2i + 1) n / (2 cap)) of x: the
  centre of the i-th of ``cap`` equal segments.

  Args:
    x: [N, ...] frames or chunks of one clip.
    cap: the largest number of rows to keep.

  Returns:
    [min(N, cap), ...]
  """
  n = tf.shape(x)[0]
  idx = ((2 * tf.range(cap) + 1) * n) // (2 * cap)
  return tf.cond(n > cap, lambda: tf.gather(x, idx), lambda: x)


def bucket_index(f: tf.Tensor, c: tf.Tensor,
                 shapes: list[tuple[int, int]]) -> tf.Tensor:
  """Index of the smallest bucket with F_k >= f and C_k >= c."""
  fs = tf.constant([s[0] for s in shapes])
  cs = tf.constant([s[1] for s in shapes])
  fits = tf.logical_and(f <= fs, c <= cs)
  return tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)


def pad_rows(x: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  pad = tf.stack([0, size - tf.shape(x)[0]])
  paddings = tf.concat([pad[None], tf.zeros([tf.rank(x) - 1, 2], tf.int32)], 0)
  out = tf.pad(x, paddings)
  out.set_shape([None] + x.shape.as_list()[1:])   # keep the static inner dims
  return out


def prepare_clip(ex: dict[str, tf.Tensor], max_frames: int, max_chunks: int,
                 shapes: list[tuple[int, int]]) -> dict[str, tf.Tensor]:
  """Caps one clip and pads it to its bucket's shape (uint8/float16 kept)."""
  faces = cap_uniform(ex['faces'], max_frames)
  spec = cap_uniform(ex['spec'], max_chunks)
  f, c = tf.shape(faces)[0], tf.shape(spec)[0]
  k = bucket_index(f, c, shapes)
  size_f = tf.gather([s[0] for s in shapes], k)
  size_c = tf.gather([s[1] for s in shapes], k)
  return {
      'bucket': k,
      'faces': pad_rows(faces, size_f),
      'face_mask': tf.range(size_f) < f,
      'spec': pad_rows(spec, size_c),
      'spec_mask': tf.range(size_c) < c,
      'text_ids': tf.cast(ex['text_ids'], tf.int32),
      'text_mask': tf.cast(ex['text_mask'], tf.int32),
      'labels': tf.cast(ex['labels'], tf.float32),
      'clip_id': ex['clip_id'],
  }


def pad_batch(batch: dict[str, tf.Tensor], batch_size: int
              ) -> dict[str, tf.Tensor]:
  """Pads every array of a batch to ``batch_size`` clips, adds clip_mask."""
  n = tf.shape(batch['labels'])[0]
  out = {}
  for key, value in batch.items():
    if key != 'bucket':
      out[key] = pad_rows(value, batch_size)
      out[key].set_shape([batch_size] + value.shape.as_list()[1:])
  out['clip_mask'] = tf.range(batch_size) < n
  return out


def finish_batch(batch: dict[str, tf.Tensor], batch_size: int
                 ) -> dict[str, tf.Tensor]:
  """Pads a batch to ``batch_size`` clips, normalises faces, spec -> f32."""
  out = pad_batch(batch, batch_size)
  mean = tf.constant(FACE_MEAN, tf.float32)
  std = tf.constant(FACE_STD, tf.float32)
  faces = (tf.cast(out['faces'], tf.float32) - mean) / std
  frame_on = tf.cast(out['face_mask'], tf.float32)[:, :, None, None, None]
  out['faces'] = faces * frame_on          # padded frames stay exactly 0
  out['spec'] = tf.cast(out['spec'], tf.float32)
  return out


# --------------------------------------------------------------------------
# The dataset.


def make_dataset(config: ConfigDict, split: str, *, train: bool,
                 builder: tfds_base.E2EBuilder | None = None,
                 data_dir: str | Path | None = None,
                 **epoch_kwargs) -> tf.data.Dataset:
  """One epoch of fixed-shape batches of this host's share of ``split``.

  Args:
    config: a mesm_jax config (batch_size, eval_batch_size, max_frames,
      max_chunks, deterministic_input, seed, dataset, ... are read).
    split: 'train' | 'valid' | 'test' (or any TFDS split string).
    train: shuffle (seed + epoch) and drop the remainder; else keep every clip
      exactly once, padding the last batch of each bucket (clip_mask=False).
    builder: an already prepared builder (default: build_tfds(config)).
    data_dir: TFDS data dir (default config.data_dir).
    **epoch_kwargs: ``host_epoch``'s (global_batch_size, seed, epoch,
      process_index, process_count, skip_batches, prefetch).

  Returns:
    A finite tf.data.Dataset of batch dicts (the batch contract).
  """
  builder = builder or build_tfds(config, data_dir=data_dir, progress=False)
  shapes = bucket_shapes(config.max_frames, config.max_chunks)

  def batches(ds, batch_size, seed):
    return _bucket_batches(ds, config, shapes, batch_size, train, seed)
  return host_epoch(config, builder, split, train=train, batches=batches,
                    finish=finish_batch, shapes=shapes, **epoch_kwargs)


def host_epoch(config: ConfigDict, builder, split: str, *, train: bool,
               batches: Callable[[tf.data.Dataset, int, int],
                                 tf.data.Dataset],
               finish: Callable[[dict, int], dict],
               shapes: list[tuple[int, int]],
               global_batch_size: int | None = None,
               seed: int | None = None, epoch: int = 0,
               process_index: int | None = None,
               process_count: int | None = None, skip_batches: int = 0,
               prefetch: int | None = None) -> tf.data.Dataset:
  """The epoch machinery of every model family's pipeline.

  This host's shard of ``split`` (``tfds.split_for_jax_process``), read in
  an order fixed by seed + epoch, grouped by ``batches(ds, host_batch,
  seed)``, the first ``skip_batches`` dropped (resume mid-epoch), each batch
  completed by ``finish(batch, host_batch)``, and, with several hosts, the
  same number of batches on every host (``_same_batch_count``, over the
  static ``shapes`` the batches may take).

  Args:
    global_batch_size: default config.batch_size (train) or
      config.eval_batch_size; each host gets global_batch_size //
      process_count clips per batch.
    seed: default config.seed.
    epoch: reshuffles per epoch (train): seed + epoch.
    process_index, process_count: default jax.process_index/count().
    skip_batches: they are read and grouped but not finished.  The same
      batches as an unskipped epoch only with ``config.deterministic_input``.
    prefetch: batches to prefetch (default: autotune).
  """
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  gbs = global_batch_size or (config.batch_size if train
                              else config.eval_batch_size)
  if gbs % pc:
    raise ValueError(f'global batch {gbs} is not divisible by the '
                     f'{pc} processes')
  batch_size = gbs // pc
  seed = (config.seed if seed is None else seed) + epoch
  host_split = tfds.split_for_jax_process(split, process_index=pi,
                                          process_count=pc)
  ds = batches(_read(builder, host_split, config, train, seed), batch_size,
               seed)
  ds = ds.skip(skip_batches)
  ds = ds.map(lambda b: finish(b, batch_size),
              num_parallel_calls=tf.data.AUTOTUNE)
  if pc > 1:
    ds = _same_batch_count(ds, builder, split, pc, batch_size, train,
                           shapes, skip_batches)
  return ds.prefetch(tf.data.AUTOTUNE if prefetch is None else prefetch)


def _bucket_batches(ds: tf.data.Dataset, config: ConfigDict,
                    shapes: list[tuple[int, int]], batch_size: int,
                    train: bool, seed: int) -> tf.data.Dataset:
  """Caps and pads clips to their bucket, shuffles (train), batches."""
  ds = ds.map(lambda ex: prepare_clip(ex, config.max_frames,
                                      config.max_chunks, shapes),
              num_parallel_calls=tf.data.AUTOTUNE)
  if train:  # after the cap: the buffer holds at most capped clips
    ds = ds.shuffle(config.shuffle_buffer, seed=seed,
                    reshuffle_each_iteration=False)
  return ds.group_by_window(
      key_func=lambda ex: tf.cast(ex['bucket'], tf.int64),
      reduce_func=lambda _, group: group.batch(batch_size,
                                               drop_remainder=train),
      window_size=batch_size)


def _read(builder: tfds_base.E2EBuilder, split, config: ConfigDict,
          train: bool, seed: int) -> tf.data.Dataset:
  """Decoded TFDS examples of one host's split, deterministic if asked."""
  options = tf.data.Options()
  options.deterministic = bool(config.deterministic_input)
  read_config = tfds.ReadConfig(shuffle_seed=seed, options=options,
                                try_autocache=False)
  ds = builder.as_dataset(split=split, shuffle_files=train,
                          read_config=read_config)
  return ds.with_options(options)


def _same_batch_count(ds: tf.data.Dataset, builder, split: str, pc: int,
                      batch_size: int, train: bool,
                      shapes: list[tuple[int, int]],
                      skip_batches: int) -> tf.data.Dataset:
  """Equal batch counts on every host (multi-host pmap needs lockstep).

  A host with n clips in K buckets makes between (n - K (B - 1)) / B and
  ceil(n / B) + K - 1 batches.  Train takes the smallest lower bound over
  hosts; eval appends empty batches (clip_mask all False, the smallest
  bucket's shape) up to the largest upper bound.
  """
  sizes = [builder.info.splits[tfds.split_for_jax_process(
      split, process_index=i, process_count=pc)].num_examples
           for i in range(pc)]
  k = len(shapes)
  if train:
    count = max(0, (min(sizes) - k * (batch_size - 1)) // batch_size)
    return ds.take(max(0, count - skip_batches))
  count = -(-max(sizes) // batch_size) + k - 1
  empty = tf.data.Dataset.from_tensors(_empty_batch(ds.element_spec,
                                                    shapes[0])).repeat()
  return ds.concatenate(empty).take(max(0, count - skip_batches))


def _empty_batch(spec: dict[str, tf.TensorSpec], shape: tuple[int, int]
                 ) -> dict[str, tf.Tensor]:
  """An all-padding batch of the given bucket shape (F, C)."""
  size = {'faces': shape[0], 'face_mask': shape[0], 'spec': shape[1],
          'spec_mask': shape[1]}
  out = {}
  for key, s in spec.items():
    dims = [size[key] if d is None else d for d in s.shape.as_list()]
    out[key] = tf.zeros(dims, s.dtype)
  return out
