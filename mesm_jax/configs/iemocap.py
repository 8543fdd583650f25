"""IEMOCAP (6 classes) with the paper's settings (Table 1: MESM p = 0.7).

  python experiments/run.py --dataset iemocap               # MESM, batch 2
  python experiments/run.py --dataset iemocap --model fe2e  # FE2E, batch 8

The paper's batch per model (MESM 2, FE2E 8) comes from ``default.py``.
Published (to compare with): MESM 84.4 Acc / 57.4 F1, FE2E 84.5 / 58.8.
"""

from mesm_jax.configs import default


def get_config(model: str = 'mesm'):
  c = default.get_config(model)
  c.dataset = 'iemocap'
  c.top_p = 0.7
  # Typical IEMOCAP clip ~4.5 s: 9 frames, 12 chunks (80 spectrogram
  # frames/s, 32 a chunk).  The caps cover 24 s and 25.6 s.
  c.max_frames = 48
  c.max_chunks = 64
  # A baseline's recipe on this dataset (default.DATASET_RECIPES).
  c.update(default.recipe(model, 'iemocap'))
  return c
