"""The per-frame CNN of the visual and audio branches (FE2E and MESM).

Axis letters:
  N : frames or spectrogram chunks of the whole batch (clips x frames)
  H, W : rows and columns (faces 48x48, chunks 128 mel x 32 time)
  C : channels (3 for faces, 1 for audio chunks)
  D : the CNN's output width (``trans_dim``)
  Dq : width of the text vector q (MESM only)

Layers (widths from ``features = (f0, f3, f4, f5)``, paper 64/128/256/512):
  stem    conv5x5/f0 pad 2 + BN + ReLU + maxpool 2   48 -> 24 (128x32 -> 64x16)
  block1  VGG f0 -> f0                       (conv3x3 + BN + ReLU, twice)
  block2  VGG f0 -> f0
  stage3  VGG f0 -> f3 + maxpool 2           24 -> 12 (64x16 -> 32x8)
  stage4  VGG f3 -> f4 + maxpool 2           12 -> 6  (32x8 -> 16x4)
  stage5  VGG f4 -> f5 + maxpool 2           6 -> 3   (16x4 -> 8x2)
  fc1     flatten (NHWC) -> Linear(fc_dim) -> ReLU
  fc2     Linear(D)

In MESM, stages 3-5 are sparse: before each, ``attn<s>`` (cross-modal
attention against q) picks a nucleus of positions and ``stage<s>`` is a
submanifold VGG block on them (no conv bias).  Every BatchNorm weighs its
entries by the frame weight (frame mask x clip mask) and, in sparse stages,
by the active mask, so padding never changes a real frame's output.
"""

import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mesm_jax.models import sparse
from mesm_jax.models.attention import CrossModalAttention
from mesm_jax.models.batchnorm import MaskedBatchNorm
from mesm_jax.models.conv import Conv
from mesm_jax.models.pooling import max_pool2
from mesm_jax.nucleus import nucleus_capacity


class ConvBNReLU(nn.Module):
  """Conv (with bias) + masked BatchNorm + ReLU on dense maps."""
  features: int
  kernel_size: int = 3
  train: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_chunk: int = -1

  @nn.compact
  def __call__(self, x: jax.Array, frame_weight: jax.Array) -> jax.Array:
    x = Conv(self.features, self.kernel_size, chunk=self.conv_chunk,
             dtype=self.dtype, name='conv')(x)
    return MaskedBatchNorm(axis_name=self.axis_name, dtype=self.dtype,
                           relu=True, name='bn')(
                               x, frame_weight[:, None, None], self.train)


class Stem(nn.Module):
  """conv5x5 pad 2 + BN + ReLU + maxpool 2."""
  features: int
  train: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_chunk: int = -1

  @nn.compact
  def __call__(self, x: jax.Array, frame_weight: jax.Array) -> jax.Array:
    x = ConvBNReLU(self.features, 5, self.train, self.axis_name, self.dtype,
                   self.conv_chunk, name='layer')(x, frame_weight)
    return max_pool2(x)


class VGGBlock(nn.Module):
  """Dense VGG block: (conv3x3 + BN + ReLU) x 2, optional maxpool 2."""
  features: int
  pool: bool = False
  train: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_chunk: int = -1

  @nn.compact
  def __call__(self, x: jax.Array, frame_weight: jax.Array) -> jax.Array:
    w = frame_weight[:, None, None]
    for i in (1, 2):
      x = Conv(self.features, 3, chunk=self.conv_chunk, dtype=self.dtype,
               name=f'conv{i}')(x)
      x = MaskedBatchNorm(axis_name=self.axis_name, dtype=self.dtype,
                          relu=True, name=f'bn{i}')(x, w, self.train)
    return max_pool2(x) if self.pool else x


class ConvKernel(nn.Module):
  """A 3x3 conv kernel ``[3,3,C,O]`` without bias (sparse stages)."""
  features: int

  @nn.compact
  def __call__(self, in_features: int) -> jax.Array:
    return self.param('kernel', nn.initializers.lecun_normal(),
                      (3, 3, in_features, self.features), jnp.float32)


class SparseVGGStage(nn.Module):
  """Submanifold VGG block + sparse maxpool (``sparse.py``), one impl."""
  features: int
  capacity: int
  impl: str = 'gathered'
  train: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_chunk: int = -1          # the dense convolutions of ``masked``

  @nn.compact
  def __call__(self, x: jax.Array, active: jax.Array,
               frame_weight: jax.Array) -> Tuple[jax.Array, jax.Array]:
    stage = sparse.get_stage(self.impl)
    if self.impl == 'masked':
      stage = functools.partial(stage, conv_chunk=self.conv_chunk)
    k1 = ConvKernel(self.features, name='conv1')(x.shape[-1])
    k2 = ConvKernel(self.features, name='conv2')(self.features)
    bns = [MaskedBatchNorm(axis_name=self.axis_name, dtype=self.dtype,
                           relu=True, name=f'bn{i}')
           for i in (1, 2)]

    def norm(i, h, w):
      return bns[i](h, w, self.train)

    kernels = [k.astype(self.dtype) for k in (k1, k2)]
    return stage(x.astype(self.dtype), active, frame_weight, kernels, norm,
                 self.capacity)


class FrameCNN(nn.Module):
  """The CNN applied to every frame (chunk) at once; dense or sparse.

  Attributes:
    features: (f0, f3, f4, f5) channel widths.
    fc_dim: width of the first fully connected layer.
    out_dim: output width (trans_dim).
    sparse: MESM (True) or FE2E (False).
    top_p, sparse_impl, attention_grad: MESM settings.
    axis_name: BatchNorm statistics axis (pmap/shard_map), or None.
    dtype: compute dtype; remat: rematerialise each stage in backprop.
    conv_chunk: dense convolutions sum their kernel gradient over chunks of
      at most this many frames (``conv.conv2d``); -1: 16 on CPU, one piece
      elsewhere.
  """
  features: Sequence[int] = (64, 128, 256, 512)
  fc_dim: int = 1024
  out_dim: int = 64
  sparse: bool = False
  top_p: float = 1.0
  sparse_impl: str = 'gathered'
  attention_grad: str = 'none'
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  remat: bool = False
  conv_chunk: int = -1

  def _cls(self, cls):
    return nn.remat(cls) if self.remat else cls

  @nn.compact
  def __call__(
      self, x: jax.Array, frame_weight: jax.Array,
      q: Optional[jax.Array] = None, train: bool = False,
  ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """``x [N,H,W,C]``, ``frame_weight [N]``, ``q [N,Dq]`` -> ``[N,D]``, stats.

    ``stats`` maps ``'stage<s>'`` to the ``[N]`` fraction of the stage's
    positions kept by the nucleus (MESM only).
    """
    if self.sparse and q is None:
      raise ValueError('MESM needs the text vector q for its attention')
    kw = dict(train=train, axis_name=self.axis_name, dtype=self.dtype,
              conv_chunk=self.conv_chunk)
    f0, *stage_features = self.features
    frame_weight = frame_weight.astype(jnp.float32)
    h = self._cls(Stem)(f0, name='stem', **kw)(x.astype(self.dtype),
                                               frame_weight)
    for i in (1, 2):
      h = self._cls(VGGBlock)(f0, name=f'block{i}', **kw)(h, frame_weight)
    stats = {}
    active = jnp.ones(h.shape[:3], bool)
    for s, f in zip((3, 4, 5), stage_features):
      if not self.sparse:
        h = self._cls(VGGBlock)(f, pool=True, name=f'stage{s}', **kw)(
            h, frame_weight)
        continue
      h, active, stats[f'stage{s}'] = self._sparse_stage(
          s, f, h, active, frame_weight, q, kw)
    h = h.reshape(h.shape[0], -1)
    h = nn.relu(nn.Dense(self.fc_dim, dtype=self.dtype, name='fc1')(h))
    return nn.Dense(self.out_dim, dtype=self.dtype, name='fc2')(h), stats

  def _sparse_stage(self, s, f, h, active, frame_weight, q, kw):
    """Attention (nucleus) then submanifold stage ``s``; returns kept frac."""
    n_pos = h.shape[1] * h.shape[2]
    valid = active
    h, keep, probs = CrossModalAttention(
        self.top_p, self.attention_grad, self.dtype, name=f'attn{s}')(
            h, q.astype(self.dtype), active)
    # Only when 'intermediates' is mutable (an analysis apply; init and the
    # training step leave it out): Eq. 2's probabilities, Eq. 3's nucleus
    # and the positions that could be attended, per frame [N, H, W].
    self.sow('intermediates', f'stage{s}_attention',
             {'probs': probs, 'keep': keep, 'active': valid})
    kept = keep.sum(axis=(1, 2)) / n_pos
    capacity = nucleus_capacity(n_pos, self.top_p)
    h, active = self._cls(SparseVGGStage)(
        f, capacity, self.sparse_impl, name=f'stage{s}', **kw)(
            h, keep, frame_weight)
    return h, active, kept
