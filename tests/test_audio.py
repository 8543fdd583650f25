"""Mel spectrogram (vs librosa configured like torchaudio), chunks, wav reading."""

import math

import chex
import librosa
import numpy as np
import pytest
from scipy import signal
from scipy.io import wavfile

from data_pipelines import audio


def speech_like(sr: int, seconds: float = 1.7, seed: int = 0) -> np.ndarray:
  """Voiced syllables: harmonics of a gliding pitch with vibrato, plus noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * sr)) / sr
  f0 = 140 + 40 * t / seconds + 6 * np.sin(2 * np.pi * 5.3 * t)
  phase = 2 * np.pi * np.cumsum(f0) / sr
  voiced = sum(np.sin(k * phase) * np.exp(-0.35 * k) for k in range(1, 12))
  syllables = np.clip(np.sin(2 * np.pi * 3.7 * t), 0, 1) ** 1.5
  return (0.3 * voiced * syllables + 0.02 * rng.standard_normal(t.size))


def librosa_mel(wave, sr):
  n_fft = int(sr / 16000 * 400)
  return librosa.feature.melspectrogram(
      y=wave, sr=sr, n_fft=n_fft, hop_length=n_fft // 2, win_length=n_fft,
      window='hann', center=True, pad_mode='reflect', power=2.0, n_mels=128,
      htk=True, norm=None, fmin=0.0, fmax=sr / 2, dtype=np.float64)


@pytest.mark.filterwarnings('ignore:Empty filters detected')
@pytest.mark.parametrize('sr', [16000, 44100])
def test_mel_matches_librosa_configured_like_torchaudio(sr):
  wave = speech_like(sr)
  ours = audio.mel_spectrogram(wave, sr)
  ref = librosa_mel(wave, sr)
  chex.assert_shape(ours, ref.shape)
  assert ours.shape[0] == 128
  n_fft = int(sr / 16000 * 400)
  assert ours.shape[1] == 1 + len(wave) // (n_fft // 2)
  peak = np.abs(ref).max()
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7 * peak)
  rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
  assert rel < 1e-4


@pytest.mark.filterwarnings('ignore:Empty filters detected')
def test_window_and_filterbank_definitions():
  np.testing.assert_allclose(audio.hann_window(400),
                             signal.get_window('hann', 400, fftbins=True),
                             atol=1e-12)
  ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=128, htk=True,
                            norm=None, fmin=0.0, fmax=8000.0,
                            dtype=np.float64)
  np.testing.assert_allclose(audio.mel_filterbank(16000, 400).T, ref,
                             atol=1e-10)
  assert audio.stft_params(16000) == (400, 200)
  assert audio.stft_params(44100) == (1102, 551)


def test_log_mel_option():
  wave = speech_like(16000, 0.5)
  np.testing.assert_allclose(
      audio.mel_spectrogram(wave, 16000, log_mel=True),
      np.log(audio.mel_spectrogram(wave, 16000).astype(np.float64) + 1e-6),
      rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('frames', [1, 31, 32, 33, 64, 100])
def test_chunks_of_32_frames_last_zero_padded(frames):
  spec = np.random.default_rng(frames).random((128, frames)).astype(np.float32)
  chunks = audio.chunk_spectrogram(spec)
  n = math.ceil(frames / 32)
  chex.assert_shape(chunks, (n, 128, 32))
  for c in range(n):
    part = spec[:, 32 * c:32 * (c + 1)]
    np.testing.assert_array_equal(chunks[c, :, :part.shape[1]], part)
    assert not chunks[c, :, part.shape[1]:].any()


def test_float16_saturates():
  out = audio.to_float16(np.array([1.0, 1e6, -1e6], np.float32))
  assert out.dtype == np.float16 and np.all(np.isfinite(out))
  assert out[1] == np.finfo(np.float16).max


def test_read_wav_stereo_channel_cut_and_scale(tmp_path):
  sr = 16000
  t = np.arange(sr) / sr
  left = (0.5 * np.sin(2 * np.pi * 200 * t) * 32767).astype(np.int16)
  right = (0.25 * np.sin(2 * np.pi * 900 * t) * 32767).astype(np.int16)
  path = tmp_path / 'st.wav'
  wavfile.write(path, sr, np.stack([left, right], axis=1))
  for channel, src in ((0, left), (1, right)):
    wave, got_sr = audio.read_wav(path, start=0.25, end=0.5, channel=channel)
    assert got_sr == sr and wave.dtype == np.float32
    np.testing.assert_allclose(wave, src[4000:8000] / 32768.0, atol=1e-7)
  mean, _ = audio.read_wav(path)
  np.testing.assert_allclose(mean, (left / 32768.0 + right / 32768.0) / 2,
                             atol=1e-6)
  with pytest.raises(audio.AudioError, match='channel 2'):
    audio.read_wav(path, channel=2)


def test_read_wav_mono_ignores_channel_and_bad_files_raise(tmp_path):
  path = tmp_path / 'mono.wav'
  wavfile.write(path, 16000, np.arange(-100, 100, dtype=np.int16))
  wave, _ = audio.read_wav(path, channel=1)
  np.testing.assert_allclose(wave, np.arange(-100, 100) / 32768.0)
  bad = tmp_path / 'bad.wav'
  bad.write_bytes(b'RIFF not really a wav file')
  with pytest.raises(audio.AudioError, match='cannot read'):
    audio.read_wav(bad)
  with pytest.raises(audio.AudioError, match='no audio'):
    audio.read_wav(path, start=5.0, end=6.0)
  with pytest.raises(audio.AudioError, match='too short'):
    audio.mel_spectrogram(np.zeros(150), 16000)
