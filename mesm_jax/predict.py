"""Predict the emotions of a new video with a trained work directory.

``load(workdir)`` reads what a training run left in its work directory (the
saved config ``config.json``, the best or latest checkpoint, the validation
thresholds) and returns a ``Predictor``; ``Predictor.predict(video, text=...)``
runs one clip through exactly the path a training clip takes, so that serving
cannot drift from training:

1. ``data_pipelines.preprocess.compute_clip``: frames every ``img_interval``
   ms, face crops (the config's detector), mel chunks of the video's own audio
   track or of a given wav, between ``start`` and ``end`` seconds;
2. the tokenizer of the run's text model (``mesm_jax.text.get_tokenizer``);
3. the per-clip tf.data rules of ``mesm_jax.input_pipeline``: ``prepare_clip``
   (caps to ``max_frames`` / ``max_chunks``, padding to the length bucket)
   and ``finish_batch`` (face normalisation, float32 spectrograms), called
   eagerly;
4. the evaluation step of the training loop (``mesm_jax.train.step.eval_step``
   through the loop's runner) on the restored state.

A clip of a built split therefore gets the probabilities the evaluation of
that split gives it (tests/test_predict.py checks this).  ``experiments/
predict.py`` is the command line over this module.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from data_pipelines import preprocess
from data_pipelines.readers.common import Clip
from data_pipelines.tfds import base as tfds_base
from data_pipelines.tfds import prepare
import mesm_jax
from mesm_jax import input_pipeline
from mesm_jax import models
from mesm_jax import text as text_lib
from mesm_jax.train import checkpoint as ckpt_lib
from mesm_jax.train import data as data_lib
from mesm_jax.train import loop
from mesm_jax.train import parallel
from mesm_jax.train import step as step_lib
from mesm_jax.train import workdir as workdir_lib

CHECKPOINTS = ('best', 'latest')


class Predictor:
  """A restored model with the preprocessing settings of its training run.

  Attributes:
    config: the work directory's saved config (frozen).
    workdir: the work directory.
    emotions: the label names, in the order of the model's outputs.
    labels_from: where the names come from ('checkpoint', 'tfds metadata',
      'dataset' or 'generic').
    thresholds: validation threshold per label (of the best checkpoint), or
      None when the work directory has no best checkpoint.
    checkpoint: {'kind': 'best' | 'latest', 'step': int, 'epoch': int|None}.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               state: step_lib.TrainState, checkpoint: Dict[str, Any],
               emotions: Sequence[str], labels_from: str,
               thresholds: Optional[Sequence[float]]):
    self.config = ml_collections.FrozenConfigDict(config)
    self.workdir = str(workdir)
    self.emotions = tuple(emotions)
    self.labels_from = labels_from
    self.thresholds = (None if thresholds is None else
                       np.asarray(thresholds, np.float64))
    self.checkpoint = checkpoint
    self._tokenizer = text_lib.get_tokenizer(self.config)
    self._shapes = input_pipeline.bucket_shapes(self.config.max_frames,
                                                self.config.max_chunks)
    # The training loop's evaluation path, on one device: one clip a call.
    self._runner = parallel.make_runner('pmap', jax.local_devices()[:1])
    self._state = self._runner.put_state(state)
    # The attention path: the same model and weights, applied with the
    # 'intermediates' collection mutable (the training step never is).
    self._variables = {'params': state.params,
                       'batch_stats': state.batch_stats}
    self._apply_sown = jax.jit(functools.partial(
        mesm_jax.build_model(self.config).apply, train=False,
        mutable=['intermediates']))
    self._pos_weight = np.ones((self.config.num_emotions,), np.float32)

  @property
  def needs_text(self) -> bool:
    return 't' in self.config.modalities

  def features(self, video: str, *, text: Optional[str] = None,
               audio: Optional[str] = None, start: Optional[float] = None,
               end: Optional[float] = None, clip_id: Optional[str] = None
               ) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """The model's batch of one clip (batch contract, B=1) and what it used.

    Raises:
      ValueError: no transcript for a model that reads text.
      data_pipelines.preprocess.ClipError: the video / wav cannot be used
        (missing, unreadable, no frame, too little audio).
    """
    c = self.config
    if self.needs_text and not (text and text.strip()):
      raise ValueError(
          f'{c.model.upper()} with modalities {c.modalities!r} reads the '
          'transcript: pass the text of the clip (--text or --text_file)'
          + ('; MESM cannot run without it (its attention query is the text)'
             if c.model == 'mesm' else ''))
    text = text or ''
    clip_id = clip_id or Path(video).stem
    # 'manifest': whole frames (MOSEI's rule), the audio of ``audio`` or,
    # when None, of the video's own track.
    clip = Clip(clip_id=clip_id, dataset='manifest', layout='raw', text=text,
                labels=np.zeros((c.num_emotions,), np.float32),
                audio_path=str(audio) if audio else None,
                video_path=str(video), start=start, end=end)
    arrays = preprocess.compute_clip(clip, preprocess.Options(
        c.img_interval, c.log_mel, c.face_detector))
    # The TFDS builder's own example (checks and tokens), as stored.
    example = tfds_base.to_tfds_example(
        clip_id, preprocess.make_example(clip, arrays), self._tokenizer,
        c.text_max_len, c.num_emotions)
    bucket, batch = _one_clip_batch(example, c, self._shapes)
    frames, chunks = arrays['faces'].shape[0], arrays['spec'].shape[0]
    used = {
        'clip_id': clip_id,
        'modalities': c.modalities,
        'frames': int(batch['face_mask'].sum()),
        'frames_in_clip': int(frames),
        'frames_capped': bool(frames > c.max_frames),
        'face_fallbacks': int(arrays['face_fallbacks']),
        'face_detector': c.face_detector,
        'img_interval_ms': int(c.img_interval),
        'chunks': int(batch['spec_mask'].sum()),
        'chunks_in_clip': int(chunks),
        'chunks_capped': bool(chunks > c.max_chunks),
        'audio_rate': int(arrays['audio_rate']),
        'tokens': int(batch['text_mask'].sum()),
        'text_max_len': int(c.text_max_len),
        'bucket': list(self._shapes[bucket]),
    }
    return batch, used

  def probabilities(self, batch: Dict[str, np.ndarray]) -> np.ndarray:
    """Sigmoid probabilities [B, E] of a batch, by the loop's eval step."""
    out = self._runner.eval_step(self._state, step_lib.model_inputs(batch),
                                 self._pos_weight)
    return np.asarray(out['probs'], np.float64)[np.asarray(out['clip_mask'],
                                                           bool)]

  def attention(self, batch: Dict[str, np.ndarray]
                ) -> Dict[str, Dict[str, np.ndarray]]:
    """MESM's cross-modal attention of a batch, per branch and stage.

    Returns ``{'<visual|audio>/stage<s>': {'probs', 'keep', 'active'}}``,
    each ``[B, F, H, W]`` (F frames or spectrogram chunks; H x W the map the
    layer attends over): Eq. 2's probabilities (summing to 1 over a frame's
    active positions), Eq. 3's nucleus (0/1) and the positions that could be
    attended (all for stage 3, the previous nucleus pooled after it).
    """
    if self.config.model != 'mesm':
      raise ValueError('FE2E has no cross-modal attention (model=fe2e)')
    _, sown = self._apply_sown(self._variables, step_lib.model_inputs(batch))
    out = {}
    for branch, frames_key in (('visual', 'face_mask'), ('audio', 'spec_mask')):
      per_stage = sown.get('intermediates', {}).get(f'{branch}_cnn', {})
      b, f = batch[frames_key].shape
      for stage, (values,) in sorted(per_stage.items()):
        out[f'{branch}/{stage.removesuffix("_attention")}'] = {
            k: np.asarray(v).reshape((b, f) + np.asarray(v).shape[1:])
            for k, v in values.items()}
    return out

  def predict(self, video: str, *, text: Optional[str] = None,
              audio: Optional[str] = None, start: Optional[float] = None,
              end: Optional[float] = None,
              features: Optional[Tuple[Dict[str, np.ndarray],
                                       Dict[str, Any]]] = None
              ) -> Dict[str, Any]:
    """Emotions of one clip of ``video`` (JSON-ready dict).

    Args:
      video: the video file (frames; also the audio unless ``audio``).
      text: the clip's transcript; required when the model reads text (MESM
        always does).
      audio: a wav to take the audio from; None: the video's own track.
      start, end: the clip's span in seconds (in the video and the wav);
        None: from the start / to the end.
      features: ``self.features(...)`` of this clip if already computed
        (e.g. to draw its attention too); computed here otherwise.

    Returns:
      ``{'video', 'audio', 'start', 'end', 'emotions': {name: {'probability',
      'threshold', 'decision'}}, 'predicted': [names over threshold],
      'used': {...}, 'checkpoint': {...}}``.  Without thresholds (no best
      checkpoint) the decisions are None.
    """
    batch, used = features or self.features(video, text=text, audio=audio,
                                            start=start, end=end)
    probs = self.probabilities(batch)[0]
    emotions = {}
    for i, name in enumerate(self.emotions):
      threshold = None if self.thresholds is None else float(
          self.thresholds[i])
      emotions[name] = {
          'probability': float(probs[i]), 'threshold': threshold,
          'decision': None if threshold is None else bool(probs[i] >
                                                          threshold)}
    return {
        'video': str(video), 'audio': None if not audio else str(audio),
        'start': start, 'end': end, 'model': self.config.model,
        'emotions': emotions,
        'predicted': [n for n, e in emotions.items() if e['decision']],
        'labels_from': self.labels_from, 'used': used,
        'checkpoint': dict(self.checkpoint), 'workdir': self.workdir,
    }


def load(workdir: str, checkpoint: str = 'best') -> Predictor:
  """A ``Predictor`` from a work directory's saved config and checkpoint.

  Args:
    workdir: a training run's work directory (``config.json`` and
      ``checkpoints/`` in it).
    checkpoint: 'best' (the best validation epoch) or 'latest'.

  Raises:
    FileNotFoundError: no saved config, or no checkpoint of that kind.
    ValueError: an unknown ``checkpoint``; a baseline's workdir (no video
      input).
  """
  if checkpoint not in CHECKPOINTS:
    raise ValueError(f'checkpoint must be one of {CHECKPOINTS}, got '
                     f'{checkpoint!r}')
  config = workdir_lib.load_config(workdir)
  if config is None:
    raise FileNotFoundError(
        f'no saved config {workdir_lib.config_path(workdir)}: not a training '
        'work directory (a run writes it when it starts)')
  if config.model not in models.END_TO_END:
    raise ValueError(
        f'{workdir} trained the baseline {config.model!r}, which reads '
        'hand-crafted feature sequences (features_e2e), not video: predict '
        f'runs the end-to-end models {models.END_TO_END} only')
  ckpt_root = workdir_lib.path(workdir, 'checkpoints', checkpoint)
  if not ckpt_root.is_dir():  # before Checkpoints(), which creates folders
    raise FileNotFoundError(f'no {checkpoint} checkpoint in {ckpt_root}; '
                            'train first')
  model = loop.build_model(config)
  fresh = loop.init_state(config, model, _sample_batch(config))
  ckpts = ckpt_lib.Checkpoints(workdir)
  try:
    restore = (ckpts.restore_best if checkpoint == 'best'
               else ckpts.restore_latest)
    restored = restore(fresh.to_dict())
    if restored is None:
      raise FileNotFoundError(f'no {checkpoint} checkpoint in {ckpt_root}; '
                              'train first')
    state_dict, meta = restored
    best = ckpts.best_meta()
    notes = list(ckpts.notes)  # checkpoints skipped as broken
  finally:
    ckpts.close()
  thresholds = None if best is None else best.get('thresholds')
  emotions, labels_from = label_names(config, best)
  # 'epoch': the best epoch (1-based), or the epochs a latest state finished.
  info = {'kind': checkpoint, 'step': int(state_dict['step']),
          'epoch': meta.get('epoch'), 'notes': notes}
  return Predictor(config, workdir, fresh.from_dict(state_dict), info,
                   emotions, labels_from, thresholds)


def _sample_batch(config) -> Dict[str, np.ndarray]:
  """An all-zero batch of one one-frame clip: the parameters' shapes.

  Built by the pipeline's own per-clip rules, so its keys, dtypes and inner
  shapes are those of real batches.
  """
  example = {
      'faces': np.zeros((1, 48, 48, 3), np.uint8),
      'spec': np.zeros((1, 128, 32), np.float16),
      'text_ids': np.zeros((config.text_max_len,), np.int32),
      'text_mask': np.ones((config.text_max_len,), np.int32),
      'labels': np.zeros((config.num_emotions,), np.float32),
      'clip_id': 'sample',
  }
  shapes = input_pipeline.bucket_shapes(config.max_frames, config.max_chunks)
  return _one_clip_batch(example, config, shapes)[1]


def _one_clip_batch(example: Dict[str, Any], config,
                    shapes) -> Tuple[int, Dict[str, np.ndarray]]:
  """(bucket, batch of one): a stored example through the tf.data rules.

  ``input_pipeline.prepare_clip`` (caps, bucket padding) and
  ``finish_batch`` (normalisation), run eagerly on the example's arrays.
  """
  keys = ('faces', 'spec', 'text_ids', 'text_mask', 'labels', 'clip_id')
  one = input_pipeline.prepare_clip({k: tf.constant(example[k]) for k in keys},
                                    config.max_frames, config.max_chunks,
                                    shapes)
  batch = input_pipeline.finish_batch(
      {k: tf.expand_dims(v, 0) for k, v in one.items()}, 1)
  return int(one['bucket']), {k: v.numpy() for k, v in batch.items()}


def label_names(config, best_meta: Optional[Dict[str, Any]]
                ) -> Tuple[Tuple[str, ...], str]:
  """The label names in output order, and where they were found.

  The best checkpoint's (saved with it); for a workdir from before they were
  saved, the TFDS data's metadata when it is built (read, never built here),
  else the dataset's fixed names (MOSEI, IEMOCAP, synthetic), else
  ``emotion<i>``.
  """
  n = int(config.num_emotions)
  names = tuple((best_meta or {}).get('emotions') or ())
  if len(names) == n:
    return names, 'checkpoint'
  try:
    builder = prepare.get_builder(
        config.dataset, input_pipeline.builder_config(config),
        data_dir=config.data_dir or None)
    if builder.is_prepared():
      names = tuple(builder.info.metadata.get('emotions', ()))
      if len(names) == n:
        return names, 'tfds metadata'
  except Exception:  # pylint: disable=broad-except
    pass  # data moved or never built here: the fallbacks below
  names = data_lib.EMOTIONS.get(config.dataset, ())
  if len(names) == n:
    return tuple(names), 'dataset'
  return tuple(f'emotion{i}' for i in range(n)), 'generic'
