"""Compute accounting shared by ``experiments/flops.py`` and ``benchmark.py``.

Axis letters: B clips, F face frames per clip, C spectrogram chunks per clip,
N frames of all clips (B x F or B x C), L tokens.

* clip sizes: frames and chunks of a clip of given length (``clip_sizes``);
* models and synthetic batches at any width (``build``, ``make_batch``), with
  an ALBERT-base-sized text encoder initialised at random
  (``albert_base_encoder``: no download);
* XLA's own counts: ``xla_flops`` (cost analysis of the compiled function,
  a multiply-add counts as 2 FLOPs) and ``xla_memory`` (the compiled
  function's planned buffers);
* analytic counts: ``conv_flops`` (2 H W k k Cin Cout) and the effective
  FLOPs of MESM's CNN (``effective_cnn_flops``: sparse stages charged only for
  the positions the nucleus kept);
* timing (``Timer``: compile time apart, warm-up, median of interleaved
  repeats) and peak memory (``peak_memory_bytes``).
"""

import math
import resource
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mesm_jax import models
from mesm_jax.models.cnn import FrameCNN
from mesm_jax.text import checkpoint
from mesm_jax.text import layers

FACE = (48, 48, 3)
CHUNK = (128, 32)
# Paper Table 1/2: GFLOPs of one clip (feature extraction), to compare with.
PAPER_GFLOPS = {'fe2e': 8.65, 'mesm_p0.7': 5.18, 'mesm_p0.5': 4.34}


# XLA:CPU compile options, by name.  ``ynn_all`` lets YNNPACK take every
# kind of fusion it offers (also elementwise ops and reductions, such as
# BatchNorm's), not only XLA:CPU's default choice; docs/benchmarks.md, run 11.
_YNN_TYPES = ('DOT', 'ELTWISE', 'REDUCE', 'INDIVIDUAL_DOT',
              'INDIVIDUAL_CONVOLUTION')
CPU_COMPILE_PRESETS: Dict[str, Dict[str, str]] = {
    'default': {},
    'ynn_all': {'xla_cpu_experimental_ynn_fusion_type': ','.join(
        f'LIBRARY_FUSION_TYPE_{t}' for t in _YNN_TYPES)},
}


def compile_options(preset: str) -> Dict[str, str]:
  """``compiler_options`` of a CPU preset; none on other backends."""
  if preset not in CPU_COMPILE_PRESETS:
    raise ValueError(f'unknown compile preset {preset!r}; choose from '
                     f'{sorted(CPU_COMPILE_PRESETS)}')
  if jax.default_backend() != 'cpu':
    return {}
  return dict(CPU_COMPILE_PRESETS[preset])


def clip_sizes(seconds: float, img_interval_ms: int = 500,
               sample_rate: int = 16000, hop: int = 200,
               chunk_frames: int = 32) -> Tuple[int, int]:
  """(face frames, spectrogram chunks) of a clip of ``seconds``.

  Frames: one every ``img_interval_ms``.  Chunks: a centred STFT gives
  ``floor(samples / hop) + 1`` spectrogram frames, cut into chunks of
  ``chunk_frames`` (the last one zero-padded).
  """
  frames = max(1, int(seconds * 1000 // img_interval_ms))
  spec_frames = int(seconds * sample_rate) // hop + 1
  return frames, math.ceil(spec_frames / chunk_frames)


# Typical clips (MESM.md): IEMOCAP ~4.5 s -> 9 frames; its 11 chunks are the
# brief's figure (clip_sizes(4.5) gives 12); MOSEI ~24 s -> 48 frames, 61.
CLIPS = {
    'iemocap': dict(seconds=4.5, frames=9, chunks=11),
    'mosei': dict(seconds=24.0, frames=clip_sizes(24.0)[0],
                  chunks=clip_sizes(24.0)[1]),
}


def albert_base_encoder(dtype: Any = jnp.float32) -> nn.Module:
  """ALBERT base v2's shape (E 128, D 768, 12 shared layers), random init."""
  cfg = layers.EncoderConfig(
      model_type='albert', vocab_size=30000, hidden_size=768, num_layers=12,
      num_heads=12, intermediate_size=3072, hidden_act='gelu_new',
      max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
      hidden_dropout=0.0, attention_dropout=0.0, embedding_size=128)
  return checkpoint.build_encoder(cfg, dtype)


def model_config(base, model: str, top_p: float = 1.0,
                 impl: str = 'gathered', **overrides):
  """A copy of ``base`` for FE2E or MESM at ``top_p`` with ``impl``."""
  c = base.copy_and_resolve_references()
  c.model, c.top_p, c.sparse_impl = model, float(top_p), impl
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def make_batch(config, batch: int, frames: int, chunks: int,
               seed: int = 0) -> Dict[str, np.ndarray]:
  """A synthetic batch of the model's contract (random inputs, all real)."""
  rng = np.random.default_rng(seed)
  length = config.text_max_len
  vocab = min(getattr(config, 'scratch_vocab_size', 30000), 30000)
  return {
      'text_ids': rng.integers(1, vocab, (batch, length)).astype(np.int32),
      'text_mask': np.ones((batch, length), np.int32),
      'faces': rng.standard_normal((batch, frames) + FACE).astype(np.float32),
      'face_mask': np.ones((batch, frames), bool),
      'spec': rng.gamma(1.0, 1.0, (batch, chunks) + CHUNK).astype(np.float32),
      'spec_mask': np.ones((batch, chunks), bool),
      'labels': (rng.random((batch, config.num_emotions)) < 0.3).astype(
          np.float32),
      'clip_mask': np.ones((batch,), bool),
  }


def build(config, text: str = 'config', seed: int = 0,
          sample: Optional[Dict[str, np.ndarray]] = None):
  """(model, variables) for ``config``; ``text='albert_base'`` swaps in an
  ALBERT-base-sized random encoder, ``'config'`` keeps the config's.  The
  parameters follow ``config.init`` as in training (``'pytorch'``: redrawn
  by ``models.pytorch_init``)."""
  encoder = albert_base_encoder() if text == 'albert_base' else None
  model = models.build_model(config, text_encoder=encoder)
  if sample is None:
    sample = make_batch(config, 1, 2, 2)
  variables = jax.jit(lambda s: model.init(jax.random.key(seed), s))(sample)
  if config.get('init', 'flax') == 'pytorch':
    variables = {**variables, 'params': models.pytorch_init(
        variables['params'], jax.random.fold_in(jax.random.key(seed), 3))}
  return model, variables


def frame_cnn(config, name: str) -> FrameCNN:
  """The branch CNN exactly as ``MultimodalModel`` builds it (unbound)."""
  return FrameCNN(tuple(config.cnn_features), config.cnn_fc_dim,
                  config.trans_dim, config.model == 'mesm',
                  float(config.top_p), config.sparse_impl,
                  config.attention_grad, None, jnp.dtype(config.dtype),
                  bool(config.remat), int(config.conv_chunk),
                  name=name)


def cnn_inputs(batch: Dict[str, np.ndarray], branch: str):
  """``[N,H,W,C]`` frames and ``[N]`` weights of one branch of a batch."""
  if branch == 'visual':
    x, mask = batch['faces'], batch['face_mask']
  else:
    x, mask = batch['spec'][..., None], batch['spec_mask']
  n = x.shape[0] * x.shape[1]
  return x.reshape((n,) + x.shape[2:]), mask.reshape(n).astype(np.float32)


def _cost(compiled) -> Dict[str, float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
    cost = cost[0] if cost else {}
  return dict(cost or {})


def xla_flops(fn: Callable, *args) -> float:
  """FLOPs of ``jit(fn)(*args)`` by XLA's cost analysis (multiply-add = 2)."""
  return float(_cost(jax.jit(fn).lower(*args).compile()).get('flops', 0.0))


def compiled_memory(compiled) -> Dict[str, int]:
  """Planned buffer sizes of a compiled function in bytes (``temp`` = peak
  scratch; arguments and outputs apart); empty where not reported."""
  mem = compiled.memory_analysis()
  if mem is None:
    return {}
  return {k: int(getattr(mem, f'{k}_size_in_bytes', 0))
          for k in ('temp', 'argument', 'output', 'generated_code')}


def xla_memory(fn: Callable, *args) -> Dict[str, int]:
  """``compiled_memory`` of ``jit(fn)(*args)``."""
  return compiled_memory(jax.jit(fn).lower(*args).compile())


def _taps(size: int, k: int) -> int:
  """In-bounds kernel taps summed over the positions of one axis ('same')."""
  r = k // 2
  return sum(min(i + r, size - 1) - max(i - r, 0) + 1 for i in range(size))


def conv_flops(h: int, w: int, k: int, cin: int, cout: int,
               padded: bool = True) -> int:
  """FLOPs of a stride-1 'same' k x k convolution.

  ``padded=True``: the textbook 2 H W k k Cin Cout (zero padding counted).
  ``False``: only taps inside the map, which is what XLA's cost analysis
  counts (e.g. 3x3 on 12x10: 34 x 28 taps instead of 9 x 120).
  """
  if padded:
    return 2 * h * w * k * k * cin * cout
  return 2 * _taps(h, k) * _taps(w, k) * cin * cout


def stage_geometry(branch: str, features: Sequence[int]):
  """``[(stage, H, W, C_in, C_out)]`` of sparse stages 3-5 of a branch."""
  h, w = (24, 24) if branch == 'visual' else (64, 16)
  cin, out = features[0], []
  for s, f in zip((3, 4, 5), features[1:]):
    out.append((s, h, w, cin, f))
    h, w, cin = h // 2, w // 2, f
  return out


def stage_position_flops(cin: int, cout: int) -> int:
  """FLOPs per active position of a VGG stage: conv3x3 Cin->O and O->O."""
  return conv_flops(1, 1, 3, cin, cout) + conv_flops(1, 1, 3, cout, cout)


def effective_cnn_flops(dense_cnn_flops: float, branch: str,
                        features: Sequence[int], kept: Dict[int, float],
                        frames: int, extra: float = 0.0) -> float:
  """MESM CNN FLOPs charging stages 3-5 only for kept positions.

  ``dense_cnn_flops``: the FE2E CNN's count for ``frames`` frames;
  ``kept[s]``: fraction of stage ``s``'s positions the nucleus kept
  (measured); ``extra``: MESM-only work (the attention layers).
  """
  saved = 0.0
  for s, h, w, cin, cout in stage_geometry(branch, features):
    saved += (1.0 - kept[s]) * h * w * stage_position_flops(cin, cout)
  return dense_cnn_flops - frames * saved + extra


def peak_memory_bytes() -> Tuple[Optional[int], str]:
  """(peak bytes, source): device ``peak_bytes_in_use`` or process max RSS."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    stats = None
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use']), 'device peak_bytes_in_use'
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  scale = 1 if sys.platform == 'darwin' else 1024  # Linux reports KiB
  return int(rss * scale), 'process max RSS (high-water mark)'


class Timer:
  """Compile once, warm up, then time variants round-robin (median).

  Interleaving the repeats spreads load from other processes evenly over
  the variants, so their ratios stay meaningful on a shared machine.  Beside
  the wall time, each call's CPU time (all threads of this process, user +
  system: ``time.process_time``) is recorded in ``cpu``; CPU over wall time
  says how many cores a variant kept busy.
  """

  def __init__(self, repeats: int = 3, warmup: int = 1):
    self.repeats, self.warmup = repeats, warmup
    self.fns, self.compile_s, self.times, self.memory = {}, {}, {}, {}
    self.cpu = {}
    self.compiler_options: Dict[str, Dict[str, str]] = {}  # name -> options

  def add(self, name: str, fn: Callable, *args) -> None:
    # On the device once, as a training loop's prefetched batches are: the
    # timings then hold no host-to-device copies.
    args = jax.device_put(args)
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile(
        self.compiler_options.get(name) or None)
    self.compile_s[name] = time.perf_counter() - start
    self.memory[name] = compiled_memory(compiled)
    for _ in range(self.warmup):
      jax.block_until_ready(compiled(*args))
    self.fns[name] = (compiled, args)
    self.times[name], self.cpu[name] = [], []

  def run(self) -> Dict[str, float]:
    """Median seconds per call of every variant."""
    for _ in range(self.repeats):
      for name, (compiled, args) in self.fns.items():
        start, cpu_start = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(*args))
        self.times[name].append(time.perf_counter() - start)
        self.cpu[name].append(time.process_time() - cpu_start)
    return {k: float(np.median(v)) for k, v in self.times.items()}

  def cpu_seconds(self) -> Dict[str, float]:
    """Median CPU seconds per call (all threads) of every variant."""
    return {k: float(np.median(v)) for k, v in self.cpu.items() if v}
