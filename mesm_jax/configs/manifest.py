"""Your own clips, listed in a manifest (``--dataset manifest --manifest F``).

The paper's model and training settings (as for IEMOCAP: top_p 0.7, the
per-model paper batch); the label set, and so ``num_emotions``, comes from
the manifest (the command line reads it; from Python set both ``manifest``
and ``num_emotions``).  See docs/data.md, "Your own data".
"""

from mesm_jax.configs import default


def get_config(model: str = 'mesm'):
  c = default.get_config(model)
  c.dataset = 'manifest'
  c.top_p = 0.7
  return c
