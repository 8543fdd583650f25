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


# ------------------------------------------------- other rates -> 16 kHz


def write_wav(path, sr, wave):
  """float wave(s) in [-1, 1] ([S] or [S, channels]) -> 16-bit PCM wav."""
  wavfile.write(path, sr, np.round(np.asarray(wave) * 32767).astype(np.int16))


def tone(sr, freq, seconds=1.0, amp=0.5, t0=0.0):
  return amp * np.sin(2 * np.pi * freq * (t0 + np.arange(
      int(round(seconds * sr))) / sr))


@pytest.mark.parametrize('freq', [440.0, 3000.0, 7000.0])
def test_44k_tone_read_through_the_clip_path_matches_the_16k_tone(tmp_path,
                                                                  freq):
  """Tolerance: per-bin mean energy within 1e-3 of the peak bin's, the whole
  spectrogram within 5e-3 (relative Frobenius), peak bin identical.

  Measured: 2.6e-6 / 3.0e-5 at 440 Hz, 4.2e-4 / 4.5e-4 at 3 kHz, 1.9e-4 /
  2.5e-3 at 7 kHz (near the filter's passband edge, 7.36 kHz).  The
  rate-scaled spectrogram this replaces put 440 Hz in mel bin 17 with 7x the
  energy.
  """
  path = tmp_path / 'tone44k.wav'
  write_wav(path, 44100, tone(44100, freq))
  wave, sr = audio.read_clip_audio(path)
  assert sr == 44100 and wave.dtype == np.float32
  assert wave.shape == (16000,)
  got = audio.clip_spectrogram(wave).astype(np.float64)        # [C, M, 32]
  want = audio.clip_spectrogram(tone(16000, freq)).astype(np.float64)
  chex.assert_shape(got, want.shape)
  got_bins, want_bins = got.mean((0, 2)), want.mean((0, 2))    # [M]
  assert got_bins.argmax() == want_bins.argmax()
  if freq == 440.0:
    assert want_bins.argmax() == 24
  assert np.abs(got_bins - want_bins).max() < 1e-3 * want_bins.max()
  assert np.linalg.norm(got - want) < 5e-3 * np.linalg.norm(want)
  # clip_spectrogram given the 44.1 kHz samples resamples them itself.
  raw, raw_sr = audio.read_wav(path)
  assert raw_sr == 44100 and raw.shape == (44100,)
  direct = audio.clip_spectrogram(raw, raw_sr).astype(np.float64)
  chex.assert_shape(direct, want.shape)
  assert np.linalg.norm(direct - want) < 5e-3 * np.linalg.norm(want)


@pytest.mark.filterwarnings('ignore:Empty filters detected')
def test_resampled_mel_matches_librosa_load_and_melspectrogram(tmp_path):
  """librosa's own resampler (soxr, HQ) and mel, as an independent reference.

  Tolerance: relative Frobenius error 3e-4 and per-bin mean energy within
  3e-4 of the peak bin's (measured 4.8e-5 and 1.2e-4: the two filters differ
  only near 8 kHz).  scipy's default resample_poly filter misses both (8.5e-4,
  9.6e-4): it is 3 % low at 7 kHz and lets 8-9 kHz fold back.
  """
  path = tmp_path / 'speech44k.wav'
  write_wav(path, 44100, speech_like(44100, 2.0))
  wave, _ = audio.read_clip_audio(path)
  ours = audio.mel_spectrogram(wave, 16000).astype(np.float64)
  sr, pcm = wavfile.read(path)
  ref_wave = librosa.resample(pcm / 32768.0, orig_sr=sr, target_sr=16000,
                              res_type='soxr_hq')
  assert ref_wave.shape == wave.shape
  ref = librosa_mel(ref_wave, 16000)
  assert np.linalg.norm(ours - ref) < 3e-4 * np.linalg.norm(ref)
  ours_bins, ref_bins = ours.mean(1), ref.mean(1)
  assert ours_bins.argmax() == ref_bins.argmax()
  assert np.abs(ours_bins - ref_bins).max() < 3e-4 * ref_bins.max()


def test_44k_stereo_wav_becomes_mono_16k_and_cuts_line_up(tmp_path):
  """Tolerance 1e-4 (int16 steps are 3e-5): the channels' mean at 16 kHz.

  The first and last 100 samples (6 ms) of the file are left out: there the
  resampling filter reaches beyond the file's ends.
  """
  path = tmp_path / 'stereo44k.wav'
  left, right = tone(44100, 300.0, 1.5, 0.4), tone(44100, 1200.0, 1.5, 0.3)
  write_wav(path, 44100, np.stack([left, right], axis=1))
  wave, sr = audio.read_clip_audio(path)
  assert sr == 44100 and wave.shape == (24000,)
  mono16 = (tone(16000, 300.0, 1.5, 0.4) + tone(16000, 1200.0, 1.5, 0.3)) / 2
  np.testing.assert_allclose(wave[100:-100], mono16[100:-100], atol=1e-4)
  right16, _ = audio.read_clip_audio(path, channel=1)
  np.testing.assert_allclose(right16[100:-100],
                             tone(16000, 1200.0, 1.5, 0.3)[100:-100],
                             atol=1e-4)
  # A cut is the same part of the whole file resampled, not cut then
  # resampled (which smears its first and last ms).
  cut, _ = audio.read_clip_audio(path, start=0.5, end=0.9)
  assert cut.shape == (6400,)
  np.testing.assert_allclose(cut, wave[8000:14400], atol=1e-6)
  # A start off the 10 ms grid of 441 samples: sample k is at the start's
  # sample (round(0.123 * 44100) / 44100 s) + k / 16000 s.
  cut, _ = audio.read_clip_audio(path, start=0.123, end=0.4)
  first = round(0.123 * 44100)
  assert cut.shape == (math.ceil((round(0.4 * 44100) - first) * 160 / 441),)
  expect = (tone(16000, 300.0, 0.3, 0.4, first / 44100) +
            tone(16000, 1200.0, 0.3, 0.3, first / 44100)) / 2
  np.testing.assert_allclose(cut, expect[:cut.shape[0]], atol=1e-4)


@pytest.mark.parametrize('sr', [8000, 22050, 48000])
def test_other_rates_resample_to_16k(sr):
  """A 1 kHz tone, no delay, amplitude within the passband ripple (1e-4).

  Measured: at most 3e-6 off (0.5 amplitude), 200 samples from the edges.
  """
  out = audio.to_16k(tone(sr, 1000.0), sr)
  assert out.dtype == np.float32 and out.shape == (16000,)
  np.testing.assert_allclose(out[200:-200], tone(16000, 1000.0)[200:-200],
                             atol=5e-5)


def test_clip_shorter_than_one_frame_raises_audio_too_short():
  n_fft, _ = audio.stft_params(16000)
  assert n_fft == 400
  assert audio.clip_spectrogram(np.zeros(400)).shape == (1, 128, 32)
  with pytest.raises(audio.AudioTooShort, match='399 samples') as info:
    audio.clip_spectrogram(np.zeros(399))
  assert info.value.seconds == pytest.approx(399 / 16000)
  assert isinstance(info.value, audio.AudioError)
  # 44.1 kHz: 1100 samples -> 400 at 16 kHz (enough), 1090 -> 396 (not).
  assert audio.clip_spectrogram(np.zeros(1100), 44100).shape == (1, 128, 32)
  with pytest.raises(audio.AudioTooShort, match='396 samples'):
    audio.clip_spectrogram(np.zeros(1090), 44100)
