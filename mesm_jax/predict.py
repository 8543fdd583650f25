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
4. the model in inference mode on the restored weights
   (``mesm_jax.restore``: parameters and BatchNorm statistics only), and the
   sigmoid of its logits in float32, as the evaluation step computes them.

A clip of a built split therefore gets the probabilities the evaluation of
that split gives it (tests/test_predict.py checks this).  ``experiments/
predict.py`` is the command line over this module.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from data_pipelines import preprocess
from data_pipelines.readers.common import Clip
from data_pipelines.tfds import base as tfds_base
from data_pipelines.tfds import prepare
from mesm_jax import input_pipeline
from mesm_jax import restore as restore_lib
from mesm_jax import text as text_lib

CHECKPOINTS = restore_lib.CHECKPOINTS


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

  def __init__(self, restored: restore_lib.Restored, workdir: str,
               emotions: Sequence[str], labels_from: str,
               thresholds: Optional[Sequence[float]]):
    self.config = restored.config
    self.workdir = str(workdir)
    self.emotions = tuple(emotions)
    self.labels_from = labels_from
    self.thresholds = (None if thresholds is None else
                       np.asarray(thresholds, np.float64))
    # 'epoch': the best epoch (1-based), or the epochs a latest state finished.
    self.checkpoint = {'kind': restored.kind, 'step': restored.step,
                       'epoch': restored.meta.get('epoch'),
                       'notes': restored.notes}
    self._tokenizer = text_lib.get_tokenizer(self.config)
    self._shapes = input_pipeline.bucket_shapes(self.config.max_frames,
                                                self.config.max_chunks)
    self._variables = jax.device_put(restored.variables)
    apply = functools.partial(restored.model.apply, train=False)
    # The evaluation step's probabilities: float32 sigmoid of the logits.
    self._probs = jax.jit(lambda v, b: jax.nn.sigmoid(
        apply(v, b)['logits'].astype(jnp.float32)))
    # The attention path: the same model and weights, applied with the
    # 'intermediates' collection mutable (the training step never is).
    self._apply_sown = jax.jit(functools.partial(
        apply, mutable=['intermediates']))

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
    """Sigmoid probabilities [B, E] of the batch's real clips."""
    probs = self._probs(self._variables, _model_inputs(batch))
    keep = np.asarray(batch.get('clip_mask', np.ones(len(probs), bool)), bool)
    return np.asarray(probs, np.float64)[keep]

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
    _, sown = self._apply_sown(self._variables, _model_inputs(batch))
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
      ``checkpoints/`` in it; a folder or ``gs://``).
    checkpoint: 'best' (the best validation epoch) or 'latest'.

  Raises:
    FileNotFoundError: no saved config, or no checkpoint of that kind.
    ValueError: an unknown ``checkpoint``; a baseline's workdir (no video
      input).
  """
  restored = restore_lib.restore(workdir, checkpoint)
  best = restored.best_meta
  thresholds = None if best is None else best.get('thresholds')
  emotions, labels_from = label_names(restored.config, best)
  return Predictor(restored, workdir, emotions, labels_from, thresholds)


def _model_inputs(batch: Dict[str, Any]) -> Dict[str, Any]:
  """The model's keys of a batch (no ``clip_id`` strings)."""
  return {k: v for k, v in batch.items() if k != 'clip_id'}


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
  names = prepare.EMOTION_NAMES.get(config.dataset, ())
  if len(names) == n:
    return tuple(names), 'dataset'
  return tuple(f'emotion{i}' for i in range(n)), 'generic'
