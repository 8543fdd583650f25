"""Dense 'same' convolutions over many frames, optionally in frame chunks.

Axis letters:
  N : frames or spectrogram chunks of the whole batch
  H, W, C : rows, columns, input channels; O : output channels

XLA:CPU runs a convolution over many frames at once well below the rate it
reaches on a few: the kernel gradient, a reduction over all N*H*W positions,
suffers most (fwd + bwd of the audio stage-3 convolution, 61 chunks of
64x16, 64 -> 128 channels: 386 ms in one piece, 133 ms in chunks of at most
16 frames; docs/benchmarks.md, run 12).  ``conv2d`` therefore splits the
frame axis into nearly equal chunks of at most ``chunk`` frames, convolves
each and concatenates: the same numbers (the kernel gradient is summed over
the chunks, so it differs from the unsplit one by rounding only).  Shapes
stay static: the chunks are fixed by N at trace time.

``resolve_chunk(-1)`` is the default of the model configs: 16 on CPU, 0 (one
piece) on GPU and TPU, whose convolution libraries need no help.
"""

from typing import Any, List, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

CPU_CHUNK = 16


def resolve_chunk(chunk: int) -> int:
  """``chunk`` itself, or for ``-1`` the backend's default (16 on CPU)."""
  if chunk < -1:
    raise ValueError(f'conv_chunk must be -1 (auto), 0 (off) or positive, '
                     f'got {chunk}')
  if chunk == -1:
    return CPU_CHUNK if jax.default_backend() == 'cpu' else 0
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


def conv2d(x: jax.Array, kernel: jax.Array, chunk: int = -1) -> jax.Array:
  """Stride-1 'same' convolution, ``[N,H,W,C]`` x ``[k,k,C,O]`` -> ``[N,H,W,O]``.

  Zero padding ``k // 2`` on every side (odd ``k``); the frames in chunks of
  at most ``chunk`` (0: one piece; -1: ``resolve_chunk``).
  """
  pad = kernel.shape[0] // 2
  chunk = resolve_chunk(chunk)

  def one(part):
    return jax.lax.conv_general_dilated(
        part, kernel, window_strides=(1, 1), padding=((pad, pad), (pad, pad)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  pieces = frame_chunks(x.shape[0], chunk)
  if len(pieces) == 1:
    return one(x)
  return jnp.concatenate(
      [one(jax.lax.slice_in_dim(x, s, s + n, axis=0)) for s, n in pieces],
      axis=0)


class Conv(nn.Module):
  """``nn.Conv(features, (k, k), padding=k // 2)`` with frame chunks.

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
