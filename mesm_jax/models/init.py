"""PyTorch's default initialisation, as a re-draw of the Flax parameter tree.

The original code trains from PyTorch's default initial values; Flax's
defaults differ (LeCun-normal kernels, zero biases, ...).  The config field
``init`` picks one: ``'pytorch'`` (faithful, the default) or ``'flax'``.
``pytorch_init(params, rng)`` draws the freshly initialised ``params`` again
by PyTorch's rule for each layer; the modules, names, shapes and dtypes stay
Flax's, so the checkpoint layout is the same either way.

Axis letters: I, O input and output width of a Dense; k kernel size; C input
channels; D model width; h heads, Dh head width (h * Dh = D); M modalities.
``U(b)`` is uniform on ``[-b, b)``.

    parameter                                   PyTorch rule
    Dense kernel [I,O], conv kernel [k,k,C,O]   U(1 / sqrt(fan_in)),
                                                fan_in = I, resp. k * k * C
    their bias [O]                              U(the kernel's bound)
    self-attention query/key/value kernel       U(sqrt(6 / (D + 3 D))): xavier
      [D,h,Dh]                                  of the packed in_proj [3D, D]
    their biases [h,Dh]                         0
    self-attention out kernel [h,Dh,D]          U(1 / sqrt(h * Dh))
    its bias [D]                                0
    LayerNorm, BatchNorm scale / bias           1 / 0 (as Flax: kept)
    SequenceTransformer ``cls`` [D]             N(0, 1): an nn.Embedding(1, D)
    ``text_encoder`` subtree                    kept

The Dense rule covers ``fc1``/``fc2`` of the CNNs, the heads, the
cross-modal attention's ``w_m``/``w_q``/``w_i``, the Transformers' ``ff1``/
``ff2`` and the late fusion ``fusion/mix`` (kernel [M,1], U(1 / sqrt(M)));
the conv rule covers ``Conv`` (dense stages) and the bias-free kernels of the
sparse stages.  The text encoder is left as it is: the original loads ALBERT
from its checkpoint and our pretrained encoders are loaded after
initialisation (``loop.init_state``); the tiny ``'scratch'`` encoder has no
counterpart in the original and keeps Flax's initialisation.

Deterministic: each parameter draws from ``rng`` folded with a stable hash of
its path (``'visual_cnn/fc1/kernel'``), so its values do not depend on which
other parameters the model has; the folded key's words seed a numpy generator
(nothing to compile: a paper-width model is redrawn in about a second).
"""

import hashlib
import math
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np


TEXT_ENCODER = 'text_encoder'
_ATTENTION = ('query', 'key', 'value', 'out')

def _key_name(k) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _path_hash(path: Tuple[str, ...]) -> int:
  """A stable 32-bit hash of ``'a/b/c'`` (not Python's salted ``hash``)."""
  digest = hashlib.sha256('/'.join(path).encode()).digest()
  return int.from_bytes(digest[:4], 'little')


def _fan_in_bound(kernel_shape) -> float:
  return 1.0 / math.sqrt(math.prod(kernel_shape[:-1]))


def _rule(path: Tuple[str, ...], shapes: Dict[Tuple[str, ...], tuple]
          ) -> Tuple[str, float]:
  """(kind, scale) of the parameter at ``path``; see the module doc."""
  if path[0] == TEXT_ENCODER:
    return 'keep', 0.0
  name, parent = path[-1], path[:-1]
  shape = shapes[path]
  if name == 'cls':
    return 'normal', 1.0
  if name == 'scale':  # LayerNorm, BatchNorm
    return 'keep', 0.0
  in_attention = (len(parent) >= 2 and parent[-1] in _ATTENTION and all(
      parent[:-1] + (n, 'kernel') in shapes for n in _ATTENTION))
  if in_attention and parent[-1] != 'out':
    if name == 'bias':
      return 'zeros', 0.0
    if name == 'kernel':  # [D,h,Dh]: xavier of in_proj_weight [3 h Dh, D]
      fan_in, fan_out = shape[0], 3 * math.prod(shape[1:])
      return 'uniform', math.sqrt(6.0 / (fan_in + fan_out))
  if name == 'kernel':
    return 'uniform', _fan_in_bound(shape)
  if name == 'bias':
    if in_attention:  # out_proj.bias
      return 'zeros', 0.0
    sibling = parent + ('kernel',)
    if sibling in shapes:
      return 'uniform', _fan_in_bound(shapes[sibling])
    return 'keep', 0.0  # LayerNorm, BatchNorm
  raise ValueError(f"no PyTorch initialisation rule for parameter "
                   f"{'/'.join(path)} {shape}; use init='flax' or add one to "
                   'mesm_jax/models/init.py')


def _path_keys(rng: jax.Array, hashes: List[int]) -> np.ndarray:
  """The words of ``fold_in(rng, h)`` for every ``h``: ``[len(hashes), 2]``."""
  if not hashes:
    return np.zeros((0, 2), np.uint32)
  fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
  keys = fold(rng, np.asarray(hashes, np.uint32))
  return np.asarray(jax.random.key_data(keys)).reshape(len(hashes), -1)


def _draw(words: np.ndarray, kind: str, scale: float, shape, dtype
          ) -> np.ndarray:
  """One parameter, from a numpy generator seeded with its key's words."""
  gen = np.random.default_rng([int(w) for w in words])
  if kind == 'uniform':
    x = gen.uniform(-scale, scale, shape)
  elif kind == 'normal':
    x = gen.normal(0.0, scale, shape)
  else:
    x = np.zeros(shape)
  return x.astype(dtype)


def pytorch_init(params: Any, rng: jax.Array) -> Any:
  """``params`` drawn again by PyTorch's default rules (module doc).

  Args:
    params: the ``params`` collection of a fresh ``model.init`` (a nested
      dict of numpy or JAX arrays).
    rng: a PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).

  Returns:
    A tree of the same structure, shapes and dtypes (numpy leaves stay numpy,
    JAX leaves JAX); the ``text_encoder`` subtree, LayerNorm and BatchNorm
    parameters are the given ones.

  Raises:
    ValueError: a parameter no rule covers (the model gained a layer kind).
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [tuple(_key_name(k) for k in p) for p, _ in flat]
  leaves = [leaf for _, leaf in flat]
  shapes = {p: tuple(np.shape(leaf)) for p, leaf in zip(paths, leaves)}
  rules = [_rule(p, shapes) for p in paths]
  redrawn = [i for i, (kind, _) in enumerate(rules) if kind != 'keep']
  words = _path_keys(rng, [_path_hash(paths[i]) for i in redrawn])
  out = list(leaves)
  for i, w in zip(redrawn, words):
    kind, scale = rules[i]
    leaf = leaves[i]
    new = _draw(w, kind, scale, shapes[paths[i]], leaf.dtype)
    out[i] = new if isinstance(leaf, np.ndarray) else jnp.asarray(new)
  return jax.tree_util.tree_unflatten(treedef, out)
