"""CMU-MOSEI with the paper's settings (Table 2: MESM p = 0.5).

  python experiments/run.py --dataset mosei --top_p 0.5

Published (to compare with): MESM 66.8 WAcc / 46.8 F1, FE2E 67.6 / 47.4.
"""

from mesm_jax.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'mosei'
  c.top_p = 0.5
  # Typical MOSEI clip ~24 s: 48 frames at 500 ms, ~24 chunks of 32 frames.
  c.max_frames = 64
  c.max_chunks = 48
  return c
