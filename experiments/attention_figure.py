"""MESM's cross-modal attention drawn over the faces and the spectrogram.

In the spirit of the paper's Figure 3: one column per face frame, the face
crop on top and under it each cross-modal layer's attention (Eq. 2,
upsampled to the crop) with its nucleus (Eq. 3) outlined; then the mel
spectrogram of the clip's chunks (time on x) with each layer's attention
over it.  ``write(path, batch, attention, title)`` writes the PNG and the
raw arrays beside it (``.npz``), locally or to ``gs://``
(``data_pipelines.paths``).  Used by ``experiments/predict.py --attention
DIR`` and ``experiments/visualize.py``.
"""

import io
from typing import Dict, Sequence

from etils import epath
import matplotlib
matplotlib.use('Agg')  # files only, no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from data_pipelines import paths
from mesm_jax import input_pipeline

STAGES = ('stage3', 'stage4', 'stage5')
MAX_FRAMES = 8   # face columns drawn (the first ones of the clip)


def _upsample(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
  """Nearest-neighbour resize of a [h, w] map to ``shape`` (exact blocks)."""
  rows = np.arange(shape[0]) * a.shape[0] // shape[0]
  cols = np.arange(shape[1]) * a.shape[1] // shape[1]
  return a[rows][:, cols]


def _faces_rgb(batch: Dict[str, np.ndarray]) -> np.ndarray:
  """The batch's first clip's face crops back in 0..1 RGB [F, 48, 48, 3]."""
  mean = np.asarray(input_pipeline.FACE_MEAN, np.float32)
  std = np.asarray(input_pipeline.FACE_STD, np.float32)
  faces = batch['faces'][0] * std + mean
  return np.clip(faces / 255.0, 0.0, 1.0)


def _spectrogram(batch: Dict[str, np.ndarray]) -> np.ndarray:
  """The real chunks of the first clip side by side: [mel, time]."""
  chunks = batch['spec'][0][batch['spec_mask'][0]]        # [C, 128, 32]
  spec = np.concatenate(list(chunks), axis=1) if len(chunks) else (
      np.zeros((128, 32)))
  return np.log(spec + 1e-6) if spec.min() >= 0 else spec


def _audio_map(values: np.ndarray, mask: np.ndarray,
               mel_time: Sequence[int]) -> np.ndarray:
  """Per-chunk maps [C, h, w] upsampled to [128, 32] and set side by side."""
  maps = [_upsample(m, mel_time) for m in values[mask]]
  return np.concatenate(maps, axis=1) if maps else np.zeros(mel_time)


def write(path: str, batch: Dict[str, np.ndarray],
          attention: Dict[str, Dict[str, np.ndarray]],
          title: str) -> epath.Path:
  """Writes ``path`` (PNG) and ``path`` with suffix ``.npz``; returns the PNG.

  Args:
    path: the PNG to write.
    batch: a one-clip batch (batch contract; ``Predictor.features``).
    attention: ``Predictor.attention(batch)``.
    title: the figure's title (clip id, labels, predictions).
  """
  path = paths.as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  frames = np.flatnonzero(batch['face_mask'][0])[:MAX_FRAMES]
  faces = _faces_rgb(batch)
  visual = [k for k in (f'visual/{s}' for s in STAGES) if k in attention]
  audio = [k for k in (f'audio/{s}' for s in STAGES) if k in attention]
  n_cols = max(len(frames), 1)
  n_rows = (1 + len(visual)) + (1 + len(audio) if audio else 0)
  fig = plt.figure(figsize=(1.3 * n_cols + 1.2, 1.3 * n_rows + 0.6))
  grid = fig.add_gridspec(n_rows, n_cols)
  for col, f in enumerate(frames):
    ax = fig.add_subplot(grid[0, col])
    ax.imshow(faces[f])
    ax.set_title(f'frame {f}', fontsize=7)
    ax.axis('off')
    for row, key in enumerate(visual, start=1):
      ax = fig.add_subplot(grid[row, col])
      probs = attention[key]['probs'][0, f]
      keep = attention[key]['keep'][0, f]
      ax.imshow(faces[f])
      ax.imshow(_upsample(probs, faces.shape[1:3]), cmap='jet', alpha=0.5)
      ax.contour(_upsample(keep.astype(float), faces.shape[1:3]), levels=[0.5],
                 colors='white', linewidths=0.6)
      ax.axis('off')
      if col == 0:
        ax.set_title(f'{key}: p, nucleus', fontsize=6, loc='left')
  if audio:
    spec = _spectrogram(batch)
    mask = batch['spec_mask'][0]
    ax = fig.add_subplot(grid[len(visual) + 1, :])
    ax.imshow(spec, origin='lower', aspect='auto', cmap='magma')
    ax.set_title('mel spectrogram (time ->)', fontsize=7, loc='left')
    ax.axis('off')
    for row, key in enumerate(audio, start=len(visual) + 2):
      ax = fig.add_subplot(grid[row, :])
      ax.imshow(spec, origin='lower', aspect='auto', cmap='gray')
      probs = _audio_map(attention[key]['probs'][0], mask, spec.shape[:1] + (
          32,))
      keep = _audio_map(attention[key]['keep'][0].astype(float), mask,
                        spec.shape[:1] + (32,))
      ax.imshow(probs, origin='lower', aspect='auto', cmap='jet', alpha=0.5)
      ax.contour(keep, levels=[0.5], colors='white', linewidths=0.5)
      ax.set_title(f'{key}: p, nucleus', fontsize=7, loc='left')
      ax.axis('off')
  fig.suptitle(title, fontsize=8)
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=80)
  plt.close(fig)
  path.write_bytes(png.getvalue())
  npz = io.BytesIO()
  np.savez_compressed(npz, **{
      f'{key}/{name}': value for key, arrays in attention.items()
      for name, value in arrays.items()},
                      faces=batch['faces'][0], face_mask=batch['face_mask'][0],
                      spec=batch['spec'][0], spec_mask=batch['spec_mask'][0])
  path.with_suffix('.npz').write_bytes(npz.getvalue())
  return path
