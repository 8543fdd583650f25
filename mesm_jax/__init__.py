"""mesm-jax: MESM and FE2E (Dai et al., NAACL 2021) in JAX/Flax."""

from mesm_jax.configs import get_config
from mesm_jax.models import build_model, param_labels
from mesm_jax.nucleus import nucleus_capacity, nucleus_mask, nucleus_topk

__all__ = ['build_model', 'get_config', 'nucleus_capacity', 'nucleus_mask',
           'nucleus_topk', 'param_labels']
__version__ = '0.1.0'
