"""Dense 'same' convolutions whose kernel gradient is taken in frame chunks.

Axis letters:
  N : frames or spectrogram chunks of the whole batch
  H, W, C : rows, columns, input channels; O : output channels

XLA:CPU computes a convolution's kernel gradient (a reduction over all
N*H*W positions) well below its usual rate when N is large: at 88 frames
30-89 GFLOP/s, in chunks of 8-22 frames 72-145 GFLOP/s; the forward pass and
the input gradient are no slower for 72 frames than for 9
(docs/benchmarks.md, run 12).  ``conv2d`` therefore keeps the forward pass
and the input gradient in one piece and sums the kernel gradient over
nearly equal chunks of at most ``chunk`` frames (a ``custom_vjp``): the same
numbers, up to the summation order of the kernel gradient.  Shapes stay
static: the chunks are fixed by N at trace time.

``resolve_chunk(-1)`` is the default of the model configs: 16 on CPU, 0 (one
piece) on GPU and TPU, whose convolution libraries need no help.  The platform
is the one the program is compiled for: ``build_model(config, platform=...)``
resolves it once (the training loop passes its devices' platform, so a
program compiled on a CPU host for a TPU gets the TPU's choice); only a
module built without it asks ``jax.default_backend()`` at trace time.
"""

import functools
from typing import Any, List, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

CPU_CHUNK = 16


def check_chunk(chunk: int) -> int:
  """``chunk`` if it is a valid ``conv_chunk``, else ValueError (does not
  start the JAX backend)."""
  if chunk < -1:
    raise ValueError('conv_chunk must be -1 (auto: 16 on CPU, off on GPU/TPU), '
                     f'0 (off) or a positive frame count, got {chunk}')
  return chunk


def resolve_chunk(chunk: int, platform: Optional[str] = None) -> int:
  """``chunk`` itself, or for ``-1`` the default of ``platform`` ('cpu',
  'gpu', 'tpu'; None: ``jax.default_backend()``): 16 on CPU, else 0."""
  if check_chunk(chunk) == -1:
    platform = platform or jax.default_backend()
    return CPU_CHUNK if platform == 'cpu' else 0
  return chunk


def frame_chunks(n: int, chunk: int) -> List[Tuple[int, int]]:
  """``(start, size)`` of ``ceil(n / chunk)`` nearly equal chunks of ``n``.

  One chunk when ``chunk <= 0`` or ``n <= chunk``; sizes differ by at most
  one (61 frames at most 16 -> 16, 15, 15, 15), so no tiny last chunk.
  """
  if chunk <= 0 or n <= chunk:
    return [(0, n)]
  pieces = -(-n // chunk)
  base, extra = divmod(n, pieces)
  out, start = [], 0
  for i in range(pieces):
    size = base + (i < extra)
    out.append((start, size))
    start += size
  return out


def _same_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  pad = kernel.shape[0] // 2
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(1, 1), padding=((pad, pad), (pad, pad)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def conv2d(x: jax.Array, kernel: jax.Array, chunk: int = -1) -> jax.Array:
  """Stride-1 'same' convolution, ``[N,H,W,C]`` x ``[k,k,C,O]`` -> ``[N,H,W,O]``.

  Zero padding ``k // 2`` on every side (odd ``k``).  With more than
  ``chunk`` frames (0: never; -1: ``resolve_chunk``) the kernel gradient is
  summed over chunks of at most ``chunk`` frames; the forward pass and the
  input gradient stay in one piece (they do not slow down with N).
  """
  pieces = frame_chunks(x.shape[0], resolve_chunk(chunk))
  if len(pieces) == 1:
    return _same_conv(x, kernel)
  return _chunked_kernel_grad_conv(x, kernel, tuple(pieces))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _chunked_kernel_grad_conv(x, kernel, pieces):
  return _same_conv(x, kernel)


def _chunked_fwd(x, kernel, pieces):
  return _same_conv(x, kernel), (x, kernel)


def _chunked_bwd(pieces, res, g):
  x, kernel = res
  _, dx_fn = jax.vjp(lambda x: _same_conv(x, kernel), x)
  (dx,) = dx_fn(g)
  dk = jnp.zeros(kernel.shape, jnp.float32)   # bf16 chunks add up in f32
  for start, size in pieces:
    part = jax.lax.slice_in_dim(x, start, start + size, axis=0)
    _, dk_fn = jax.vjp(lambda k, part=part: _same_conv(part, k), kernel)
    (d,) = dk_fn(jax.lax.slice_in_dim(g, start, start + size, axis=0))
    dk = dk + d.astype(jnp.float32)
  return dx, dk.astype(kernel.dtype)


_chunked_kernel_grad_conv.defvjp(_chunked_fwd, _chunked_bwd)


class Conv(nn.Module):
  """``nn.Conv(features, (k, k), padding=k // 2)`` through ``conv2d``.

  The same parameters as ``nn.Conv`` (``kernel [k,k,C,O]`` LeCun normal,
  ``bias [O]`` zeros, float32, in that order), hence the same initial values
  and checkpoints; computes in ``dtype`` as ``nn.Conv`` does.
  """
  features: int
  kernel_size: int = 3
  use_bias: bool = True
  chunk: int = -1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), jnp.float32)
    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.chunk)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros_init(),
                        (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
