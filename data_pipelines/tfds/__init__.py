"""TFDS builders of the end-to-end datasets; importing registers them.

  tfds build mosei_e2e/albert --imports data_pipelines.tfds --manual_dir ...
"""

from data_pipelines.tfds.base import E2EBuilder, E2EConfig
from data_pipelines.tfds.features import FeaturesConfig, FeaturesE2e
from data_pipelines.tfds.iemocap_e2e import IemocapE2e
from data_pipelines.tfds.manifest_e2e import ManifestE2e
from data_pipelines.tfds.mosei_e2e import MoseiE2e

__all__ = ['E2EBuilder', 'E2EConfig', 'FeaturesConfig', 'FeaturesE2e',
           'IemocapE2e', 'ManifestE2e', 'MoseiE2e']
