"""Audio: wav reading and the mel spectrogram of MESM, in plain numpy.

The spectrogram follows the defaults of torchaudio's ``MelSpectrogram`` (see
MESM.md, "Audio"): window length = FFT size = ``int(sr / 16000 * 400)``,
hop = window // 2, 128 mel bins, power 2, HTK mel scale without filter
normalisation, f_min 0, f_max sr / 2, centred frames with reflect padding and a
periodic Hann window.  No log by default (quirk 5); ``log_mel=True`` gives
``log(mel + 1e-6)``.

Axis letters used below:
  S: samples        N: FFT size / window length    K: frequency bins (N//2+1)
  M: mel bins       T: spectrogram frames           C: chunks of ``chunk`` frames
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.io import wavfile

N_MELS = 128
CHUNK_FRAMES = 32
LOG_EPS = 1e-6
FLOAT16_MAX = float(np.finfo(np.float16).max)


class AudioError(ValueError):
  """A wav that cannot be used (unreadable, empty, too short)."""


def stft_params(sample_rate: int) -> tuple[int, int]:
  """(n_fft = window length, hop) of torchaudio's defaults scaled to ``sr``."""
  n_fft = int(sample_rate / 16000 * 400)
  return n_fft, n_fft // 2


def hann_window(n: int) -> np.ndarray:
  """Periodic Hann window, as ``torch.hann_window(n)``: [N]."""
  k = np.arange(n, dtype=np.float64)
  return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)


def hz_to_mel_htk(f):
  return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz_htk(m):
  return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = N_MELS,
                   f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
  """Triangular HTK mel filters without normalisation: [K, M]."""
  f_max = sample_rate / 2 if f_max is None else f_max
  freqs = np.linspace(0.0, sample_rate // 2, n_fft // 2 + 1)          # [K]
  mel_pts = np.linspace(hz_to_mel_htk(f_min), hz_to_mel_htk(f_max),
                        n_mels + 2)
  hz_pts = mel_to_hz_htk(mel_pts)                                     # [M+2]
  widths = np.diff(hz_pts)                                            # [M+1]
  dist = hz_pts[None, :] - freqs[:, None]                             # [K, M+2]
  rising = -dist[:, :-2] / widths[:-1]
  falling = dist[:, 2:] / widths[1:]
  return np.maximum(0.0, np.minimum(rising, falling))


def power_spectrogram(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
  """|STFT|^2 of centred, reflect-padded frames: [S] -> [K, T]."""
  pad = n_fft // 2
  if wave.shape[0] <= pad:
    raise AudioError(f'{wave.shape[0]} samples: too short for a {n_fft}-point '
                     'centred STFT')
  padded = np.pad(wave.astype(np.float64), pad, mode='reflect')
  n_frames = 1 + (padded.shape[0] - n_fft) // hop
  idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
  frames = padded[idx] * hann_window(n_fft)[None, :]                  # [T, N]
  spec = np.fft.rfft(frames, n=n_fft, axis=-1)                        # [T, K]
  return (spec.real ** 2 + spec.imag ** 2).T


def mel_spectrogram(wave: np.ndarray, sample_rate: int, *,
                    n_mels: int = N_MELS, log_mel: bool = False) -> np.ndarray:
  """Mel spectrogram of a mono waveform in [-1, 1]: [S] -> [M, T] float32."""
  n_fft, hop = stft_params(sample_rate)
  power = power_spectrogram(np.asarray(wave), n_fft, hop)             # [K, T]
  mel = mel_filterbank(sample_rate, n_fft, n_mels).T @ power          # [M, T]
  if log_mel:
    mel = np.log(mel + LOG_EPS)
  return mel.astype(np.float32)


def chunk_spectrogram(spec: np.ndarray, chunk: int = CHUNK_FRAMES) -> np.ndarray:
  """Cuts [M, T] along time into [C, M, chunk]; the last chunk is zero-padded.

  With ``log_mel`` the padding is still 0 (the model masks padded chunks, and
  the padded tail of a real chunk is what the original feeds too).
  """
  n_mels, n_frames = spec.shape
  n_chunks = max(1, math.ceil(n_frames / chunk))
  padded = np.zeros((n_mels, n_chunks * chunk), spec.dtype)
  padded[:, :n_frames] = spec
  return padded.reshape(n_mels, n_chunks, chunk).transpose(1, 0, 2)


def to_float16(spec: np.ndarray) -> np.ndarray:
  """Stores a spectrogram as float16, saturating instead of overflowing."""
  return np.clip(spec, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


def _to_float(data: np.ndarray) -> np.ndarray:
  """Integer PCM -> float in [-1, 1] (torchaudio's normalisation)."""
  if data.dtype == np.uint8:
    return (data.astype(np.float32) - 128.0) / 128.0
  if np.issubdtype(data.dtype, np.integer):
    return data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
  return data.astype(np.float32)


def read_wav(path: str | Path, *, start: float | None = None,
             end: float | None = None,
             channel: int | None = None) -> tuple[np.ndarray, int]:
  """Reads ``path`` [start, end) seconds as mono float32 -> ([S], sr).

  ``channel`` picks one channel of a multi-channel file (IEMOCAP: 0 = left
  speaker, 1 = right); ``None`` averages the channels.  A mono file ignores
  ``channel``.  Raises AudioError on unreadable or empty audio.
  """
  try:
    try:
      sr, data = wavfile.read(str(path), mmap=True)
    except ValueError:                       # e.g. 24-bit PCM: no mmap
      sr, data = wavfile.read(str(path))
  except (ValueError, OSError, EOFError) as e:
    raise AudioError(f'cannot read wav {path}: {e}') from e
  first = 0 if start is None else max(0, int(round(start * sr)))
  last = data.shape[0] if end is None else min(data.shape[0],
                                               int(round(end * sr)))
  data = np.array(data[first:last])
  if data.ndim == 2:
    if channel is not None and channel >= data.shape[1]:
      raise AudioError(f'{path}: channel {channel} requested, file has '
                       f'{data.shape[1]}')
    data = data[:, channel] if channel is not None else data
  wave = _to_float(data)
  if wave.ndim == 2:
    wave = wave.mean(axis=1)
  if wave.size == 0:
    raise AudioError(f'{path}: no audio samples in [{start}, {end}) s')
  return wave, int(sr)


def clip_spectrogram(wave: np.ndarray, sample_rate: int, *,
                     log_mel: bool = False) -> np.ndarray:
  """Waveform -> float16 chunks [C, 128, 32] as stored in an example."""
  spec = mel_spectrogram(wave, sample_rate, log_mel=log_mel)
  return to_float16(chunk_spectrogram(spec))
