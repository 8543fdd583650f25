"""Paths that may be local or on Cloud Storage (``gs://bucket/...``).

A work directory (``--workdir``) and a TFDS data dir (``--data_dir``) are
either local paths or URLs such as ``gs://bucket/runs/mosei``.  Every file
operation on them goes through ``etils.epath``: local paths through the
``os`` module, ``gs://`` through ``tf.io.gfile`` (TensorFlow's client, the
one TFDS, tf.data and tf.summary use as well).  Nothing here talks to a
bucket itself.

The rules that differ between the two:

* ``as_path``: a local path has ``~`` expanded; a URL is kept as written
  (``pathlib.Path('gs://b/x')`` would turn it into ``gs:/b/x``).
* ``absolute`` / ``resolve``: a local path is made absolute (``resolve``
  also follows symlinks); a URL already is.
* ``write_text_atomic``: locally a temporary file in the same folder, synced
  and renamed over the target; on a bucket one upload (an object appears
  whole or not at all, and GCS has no rename).
* ``JsonLines``: a log of one JSON object per line.  Locally each record is
  appended to the file.  GCS objects cannot be appended to: the log keeps
  its lines in memory (those already in the object are read once, at the
  first record) and uploads the whole object again at each record, so a
  log of n records costs n uploads of up to its full size.
* ``local_path``: where what must be a local file goes for a remote
  location (e.g. the per-clip preprocessing cache of a ``gs://`` data dir):
  under ``$XDG_CACHE_HOME/mesm-jax`` (default ``~/.cache/mesm-jax``), named
  after the URL; for a local path, the path itself.
* ``append_text``: locally an append; on a bucket the object is read and
  written again with the text added.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Sequence

from etils import epath

PathLike = str | os.PathLike


def is_remote(path: PathLike) -> bool:
  """Whether ``path`` is a URL (``gs://...``), not a local path."""
  return '://' in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
  """``path`` as an ``epath.Path`` (local: ``~`` expanded)."""
  path = os.fspath(path)
  return epath.Path(path if is_remote(path) else os.path.expanduser(path))


def absolute(path: PathLike) -> epath.Path:
  """``as_path(path)``, made absolute when local (symlinks kept)."""
  path = as_path(path)
  return path if is_remote(path) else epath.Path(os.path.abspath(path))


def resolve(path: PathLike) -> epath.Path:
  """``absolute(path)`` with a local path's symlinks resolved."""
  path = as_path(path)
  return path if is_remote(path) else epath.Path(os.path.realpath(path))


def append_text(path: PathLike, text: str) -> None:
  """Adds ``text`` at the end of ``path`` (created if missing); on a
  bucket by reading the object and uploading it again whole."""
  path = as_path(path)
  if not is_remote(path):
    with open(path, 'a', encoding='utf-8') as f:
      f.write(text)
    return
  path.write_text((path.read_text() if path.exists() else '') + text)


def write_text_atomic(path: PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` so that a reader never sees part of it.

  Local: a temporary file beside ``path``, flushed, synced and renamed over
  it.  Remote: one upload (the object is replaced whole).
  """
  path = as_path(path)
  if is_remote(path):  # a bucket has no folders to make first
    path.write_text(text)
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


class JsonLines:
  """An append-only log of JSON objects, one a line (see the module doc).

  Only one writer per file: the remote form keeps its own copy of the
  lines and replaces the object with it.
  """

  def __init__(self, path: PathLike):
    self.path = as_path(path)
    self._lines = None  # remote: every line of the object, once read

  def append(self, record: Any) -> None:
    line = json.dumps(record, sort_keys=True) + '\n'
    if not is_remote(self.path):
      with open(self.path, 'a', encoding='utf-8') as f:
        f.write(line)
      return
    if self._lines is None:
      text = self.path.read_text() if self.path.exists() else ''
      if text and not text.endswith('\n'):
        text += '\n'
      self._lines = [text] if text else []
    self._lines.append(line)
    self.path.write_text(''.join(self._lines))


def find_files(root: PathLike, name: str,
               skip: Sequence[str] = ()) -> list[epath.Path]:
  """Every file called ``name`` under ``root``, at any depth, sorted.

  Folders named in ``skip`` are not entered (on a bucket each folder listed
  is a request: e.g. skip the checkpoints of a work directory).
  """
  found = []
  for folder, dirs, files in as_path(root).walk():
    dirs[:] = sorted(d for d in dirs if d.rstrip('/') not in skip)
    found += [as_path(folder) / name for f in files if f == name]
  return sorted(found, key=lambda p: p.parts)


def local_path(path: PathLike) -> pathlib.Path:
  """A local path standing for ``path`` where a local file is needed.

  ``path`` itself when it is local; for ``scheme://bucket/key`` the path
  ``<cache>/mesm-jax/scheme/bucket/key``, ``<cache>`` being
  ``$XDG_CACHE_HOME`` or ``~/.cache``.
  """
  if not is_remote(path):
    return pathlib.Path(as_path(path))
  scheme, _, rest = os.fspath(path).partition('://')
  cache = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return pathlib.Path(cache, 'mesm-jax', scheme, *rest.strip('/').split('/'))
