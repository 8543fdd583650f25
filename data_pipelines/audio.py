"""Audio: wav reading and the mel spectrogram of MESM, in plain numpy.

The spectrogram follows the defaults of torchaudio's ``MelSpectrogram`` (see
MESM.md, "Audio"): window length = FFT size = ``int(sr / 16000 * 400)``,
hop = window // 2, 128 mel bins, power 2, HTK mel scale without filter
normalisation, f_min 0, f_max sr / 2, centred frames with reflect padding and a
periodic Hann window.  No log by default (quirk 5); ``log_mel=True`` gives
``log(mel + 1e-6)``.

A clip's audio is always resampled to 16 kHz first (``to_16k``, used by
``read_clip_audio`` and ``clip_spectrogram``), so the stored spectrogram has the
paper's parameters (n_fft 400, hop 200, mel bins over 0..8 kHz) whatever the
rate of the wav.  Scaling n_fft with the rate instead would keep the frame
duration but stretch the mel scale to sr / 2 and scale the power with n_fft^2
(a 44.1 kHz 440 Hz tone: mel bin 17 instead of 24, about 7x the energy).

Axis letters used below:
  S: samples        N: FFT size / window length    K: frequency bins (N//2+1)
  M: mel bins       T: spectrogram frames           C: chunks of ``chunk`` frames
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import av
import numpy as np
from scipy import signal
from scipy.io import wavfile

SAMPLE_RATE = 16000
N_MELS = 128
CHUNK_FRAMES = 32
LOG_EPS = 1e-6
FLOAT16_MAX = float(np.finfo(np.float16).max)


# Resampling filter (Kaiser low-pass): flat (ripple 1e-4) up to PASSBAND of
# the lower Nyquist frequency, STOPBAND_DB down from that Nyquist frequency on,
# so nothing above 8 kHz folds into the top mel bins.  resample_poly's default
# filter (Kaiser beta 5) is 3 % low at 7 kHz and lets 8.2 kHz through at 0.37.
PASSBAND = 0.92
STOPBAND_DB = 80.0


class AudioError(ValueError):
  """A wav that cannot be used (unreadable, empty, too short)."""


class AudioTooShort(AudioError):
  """Fewer 16 kHz samples than one spectrogram frame (n_fft) needs."""

  def __init__(self, samples: int, n_fft: int):
    self.samples, self.n_fft = samples, n_fft
    self.seconds = samples / SAMPLE_RATE
    super().__init__(f'{self.seconds:.4f} s of audio ({samples} samples at '
                     f'{SAMPLE_RATE} Hz): too short for one {n_fft}-sample '
                     'spectrogram frame')


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


def _open_wav(path: str | Path) -> tuple[int, np.ndarray]:
  """(sr, [S] or [S, channels] samples, memory-mapped where possible)."""
  try:
    try:
      sr, data = wavfile.read(str(path), mmap=True)
    except ValueError:                       # e.g. 24-bit PCM: no mmap
      sr, data = wavfile.read(str(path))
  except (ValueError, OSError, EOFError) as e:
    raise AudioError(f'cannot read wav {path}: {e}') from e
  if sr <= 0:
    raise AudioError(f'cannot read wav {path}: sample rate {sr}')
  return int(sr), data


def _span(sr: int, n: int, start: float | None,
          end: float | None) -> tuple[int, int]:
  """Sample indices [first, last) of [start, end) seconds, within [0, n]."""
  first = 0 if start is None else max(0, int(round(start * sr)))
  last = n if end is None else min(n, int(round(end * sr)))
  return first, last


def _mono(data: np.ndarray, channel: int | None, path) -> np.ndarray:
  """[S] or [S, channels] PCM -> [S] float32: one channel, or their mean."""
  data = np.array(data)
  if data.ndim == 2:
    if channel is not None and channel >= data.shape[1]:
      raise AudioError(f'{path}: channel {channel} requested, file has '
                       f'{data.shape[1]}')
    data = data[:, channel] if channel is not None else data
  wave = _to_float(data)
  return wave.mean(axis=1) if wave.ndim == 2 else wave


def read_wav(path: str | Path, *, start: float | None = None,
             end: float | None = None,
             channel: int | None = None) -> tuple[np.ndarray, int]:
  """Reads ``path`` [start, end) seconds as mono float32 -> ([S], sr).

  The file's own rate, no resampling (``read_clip_audio`` gives 16 kHz).
  ``channel`` picks one channel of a multi-channel file (IEMOCAP: 0 = left
  speaker, 1 = right); ``None`` averages the channels.  A mono file ignores
  ``channel``.  Raises AudioError on unreadable or empty audio.
  """
  sr, data = _open_wav(path)
  first, last = _span(sr, data.shape[0], start, end)
  wave = _mono(data[first:last], channel, path)
  if wave.size == 0:
    raise AudioError(f'{path}: no audio samples in [{start}, {end}) s')
  return wave, sr


@functools.lru_cache(maxsize=16)
def _resampler(sample_rate: int) -> tuple[int, int, np.ndarray]:
  """(up, down, FIR taps) taking ``sample_rate`` to 16 kHz with resample_poly.

  The filter runs at sample_rate * up; its passband and stopband are set by
  PASSBAND and STOPBAND_DB relative to the lower of the two Nyquist
  frequencies (8 kHz when downsampling).  Odd length, so linear phase with an
  integer delay that resample_poly removes.
  """
  g = math.gcd(sample_rate, SAMPLE_RATE)
  up, down = SAMPLE_RATE // g, sample_rate // g
  fs = sample_rate * up
  nyquist = min(sample_rate, SAMPLE_RATE) / 2
  width = (1.0 - PASSBAND) * nyquist
  numtaps, beta = signal.kaiserord(STOPBAND_DB, width / (fs / 2))
  taps = signal.firwin(numtaps | 1, (1.0 + PASSBAND) / 2 * nyquist,
                       window=('kaiser', beta), fs=fs)
  taps.setflags(write=False)                 # cached: shared by all calls
  return up, down, taps


def to_16k(wave: np.ndarray, sample_rate: int) -> np.ndarray:
  """Resamples a mono waveform to 16 kHz: [S] -> [ceil(S * 16000 / sr)].

  The one place audio changes rate.  Output sample k is at time k / 16000 of
  the input (no delay); the edges see zeros beyond the input (a few ms), which
  ``read_clip_audio`` avoids by reading some context.  16 kHz is returned as
  float32 unchanged.
  """
  wave = np.asarray(wave)
  if sample_rate == SAMPLE_RATE:
    return wave.astype(np.float32, copy=False)
  if sample_rate <= 0:
    raise AudioError(f'sample rate {sample_rate}')
  if wave.size == 0:
    return np.zeros(0, np.float32)
  up, down, taps = _resampler(int(sample_rate))
  out = signal.resample_poly(wave.astype(np.float64), up, down, window=taps)
  return out.astype(np.float32)


def read_clip_audio(path: str | Path, *, start: float | None = None,
                    end: float | None = None,
                    channel: int | None = None) -> tuple[np.ndarray, int]:
  """[start, end) s of a wav as mono float32 at 16 kHz -> ([S], file's sr).

  Channels as ``read_wav``.  Another rate is resampled with ``to_16k`` from a
  span widened by the filter's half length (where the file has it), then cut
  back to the clip, so a clip's samples are those of the whole file resampled
  (the first one at time ``start``), not smeared at the cut.  The file's rate
  is returned for the preprocessing summary.
  """
  sr, data = _open_wav(path)
  first, last = _span(sr, data.shape[0], start, end)
  if last <= first:
    raise AudioError(f'{path}: no audio samples in [{start}, {end}) s')
  if sr == SAMPLE_RATE:
    return _mono(data[first:last], channel, path), sr
  up, down, taps = _resampler(sr)
  margin = -(-(taps.size // 2) // up) + 1           # input samples
  blocks = min(-(-margin // down), first // down)   # whole up/down periods
  lo, hi = first - blocks * down, min(data.shape[0], last + margin)
  wave = to_16k(_mono(data[lo:hi], channel, path), sr)
  n_out = -(-(last - first) * up // down)
  return wave[blocks * up:blocks * up + n_out], sr


class NoAudioTrack(AudioError):
  """A video without an audio stream (and no wav given for its clip)."""


# Seconds decoded beyond a clip's ends from a video's audio track: covers the
# resampling filter's half length (a few ms) with room for frame rounding.
VIDEO_AUDIO_CONTEXT_S = 0.25


def _decode_audio_track(path: str | Path, lo: float,
                        hi: float | None) -> tuple[np.ndarray, int, int]:
  """Decodes about [lo, hi) s of a video's first audio stream, mixed to mono.

  Returns (mono float32 [S] at the stream's rate, that rate, the file sample
  index of its first sample).  Samples are placed by the first decoded
  frame's timestamp and taken as contiguous after it.
  """
  try:
    container = av.open(str(path))
  except (av.FFmpegError, OSError) as e:
    raise AudioError(f'cannot read audio of video {path}: {e}') from e
  with container:
    if not container.streams.audio:
      raise NoAudioTrack(f'{path}: the video has no audio track (give a '
                         'wav in the manifest\'s audio column)')
    stream = container.streams.audio[0]
    sr = int(stream.codec_context.sample_rate or stream.rate or 0)
    if sr <= 0:
      raise AudioError(f'cannot read audio of video {path}: sample rate {sr}')
    if lo > 1.0 and stream.time_base:        # skip what the clip does not need
      try:
        container.seek(int((lo - 1.0) / stream.time_base), stream=stream)
      except av.FFmpegError:
        container.seek(0, stream=stream)
    # Planar float keeps the channels apart (mixed below as read_wav does).
    resampler = av.AudioResampler(format='fltp')
    chunks, offset = [], None
    try:
      for frame in container.decode(stream):
        if offset is None:
          t = frame.time if frame.time is not None else 0.0
          offset = int(round(t * sr))
        for out in resampler.resample(frame):
          chunks.append(out.to_ndarray().reshape(-1, out.samples))
        if hi is not None and frame.time is not None and frame.time > hi:
          break
    except av.FFmpegError as e:
      if not chunks:
        raise AudioError(f'cannot read audio of video {path}: {e}') from e
  if not chunks:
    raise AudioError(f'{path}: no audio samples in the audio track')
  data = np.concatenate(chunks, axis=1).astype(np.float32)   # [channels, S]
  return data.mean(axis=0), sr, offset or 0


def read_video_audio(path: str | Path, start: float | None = None,
                     end: float | None = None) -> tuple[np.ndarray, int]:
  """[start, end) s of a video's own audio track, mono float32 at 16 kHz.

  For clips listed without a wav (manifest): the first audio stream is
  decoded with PyAV, its channels averaged (as ``read_wav`` does), then
  resampled with ``to_16k`` exactly like ``read_clip_audio`` does a wav: from
  a span widened by the filter's half length, cut back to the clip.  Returns
  ([S], the track's own rate).  Raises NoAudioTrack for a video without
  audio, AudioError for one that cannot be decoded or an empty span.
  """
  lo = max(0.0, (start or 0.0) - VIDEO_AUDIO_CONTEXT_S)
  hi = None if end is None else end + VIDEO_AUDIO_CONTEXT_S
  data, sr, offset = _decode_audio_track(path, lo, hi)
  first, last = _span(sr, offset + data.shape[0], start, end)
  first = max(first, offset)
  if last <= first:
    raise AudioError(f'{path}: no audio samples in [{start}, {end}) s of the '
                     'audio track')
  first, last = first - offset, last - offset            # indices into data
  if sr == SAMPLE_RATE:
    return data[first:last], sr
  up, down, taps = _resampler(sr)
  margin = -(-(taps.size // 2) // up) + 1           # input samples
  blocks = min(-(-margin // down), first // down)   # whole up/down periods
  lo_i, hi_i = first - blocks * down, min(data.shape[0], last + margin)
  wave = to_16k(data[lo_i:hi_i], sr)
  n_out = -(-(last - first) * up // down)
  return wave[blocks * up:blocks * up + n_out], sr


def clip_spectrogram(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
                     log_mel: bool = False) -> np.ndarray:
  """Waveform -> float16 chunks [C, 128, 32] as stored in an example.

  The waveform is taken to 16 kHz first (``to_16k``; a no-op at 16 kHz), so
  the spectrogram always has the paper's parameters.  Raises AudioTooShort
  when it has fewer samples than one frame (n_fft = 400, 25 ms).
  """
  wave = to_16k(wave, sample_rate)
  n_fft, _ = stft_params(SAMPLE_RATE)
  if wave.shape[0] < n_fft:
    raise AudioTooShort(wave.shape[0], n_fft)
  spec = mel_spectrogram(wave, SAMPLE_RATE, log_mel=log_mel)
  return to_float16(chunk_spectrogram(spec))
