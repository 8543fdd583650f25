"""CMU-MOSEI with the paper's settings (Table 2: MESM p = 0.5).

  python experiments/run.py --dataset mosei --top_p 0.5   # MESM, batch 2
  python experiments/run.py --dataset mosei --model fe2e  # FE2E, batch 8

The paper's batch per model (MESM 2, FE2E 8) comes from ``default.py``.
Published (to compare with): MESM 66.8 WAcc / 46.8 F1, FE2E 67.6 / 47.4.
"""

from mesm_jax.configs import default


def get_config(model: str = 'mesm'):
  c = default.get_config(model)
  c.dataset = 'mosei'
  c.top_p = 0.5
  # Typical MOSEI clip ~24 s: 48 frames at 500 ms and 60 chunks (16 kHz, hop
  # 200 -> 80 spectrogram frames/s, 32 frames a chunk).  Both caps cover 32 s.
  c.max_frames = 64
  c.max_chunks = 80
  # A baseline's recipe on this dataset (default.DATASET_RECIPES).
  c.update(default.recipe(model, 'mosei'))
  return c
