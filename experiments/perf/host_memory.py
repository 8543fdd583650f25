"""Reuse freed host memory, so XLA:CPU's scratch is not page-faulted each call.

XLA:CPU allocates the scratch buffers of a compiled function afresh on every
call (a MESM or FE2E train step on one clip: 200-300 MiB; a MOSEI batch:
gigabytes).  glibc's ``malloc`` serves blocks that large with a fresh ``mmap``
and unmaps them again on ``free``, so every call faults its whole scratch back
in, one 4 KiB page at a time, and the kernel zeroes each page.  On the 2-core
VM of ``docs/benchmarks.md`` that was 65-420 thousand page faults and 13-24%
of the CPU time of one feature-extraction step.

``keep_freed_memory()`` sets three ``mallopt`` options: one arena for every
thread (``M_ARENA_MAX`` = 1; big blocks from a thread's own arena fall back
to ``mmap``), no ``mmap`` (``M_MMAP_MAX`` = 0) and no trimming of the heap
(``M_TRIM_THRESHOLD`` = SIZE_MAX), so a call reuses the pages the previous call
freed.

The cost is memory: the process keeps its peak heap resident until it exits,
and the heap grows by a scratch-sized block whenever a call allocates before
the previous call's scratch is freed (XLA frees it asynchronously), until it
holds enough blocks.  Measured: a MOSEI-sized feature extraction with 1.54 GiB
of scratch ran 1.55 -> 1.27 s per call, and the process's resident memory
went from 2.6 to 5.7 GiB.  So the benchmarks turn it on
(``--keep_freed_memory``, default true), training only when asked
(``python experiments/run.py ... --keep_freed_memory``); ``MESM_KEEP_FREED_MEMORY=0``
turns it off everywhere.  Call it early, before the first computation.
Only glibc (Linux) has these options; elsewhere the call does nothing.
"""

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# glibc stores the trim threshold as a size_t: -1 becomes SIZE_MAX (never).
_NEVER = -1

ENV = 'MESM_KEEP_FREED_MEMORY'
_applied = False


def _glibc():
  """The C library if it is glibc (it has ``mallopt``), else None."""
  if not sys.platform.startswith('linux'):
    return None
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement
    libc.mallopt  # pylint: disable=pointless-statement
  except (OSError, AttributeError):
    return None
  return libc


def keep_freed_memory() -> bool:
  """Tell glibc to keep freed memory for reuse; True if it is now in effect.

  Does nothing (returns False) off glibc or when the environment variable
  ``MESM_KEEP_FREED_MEMORY`` is ``0``.
  """
  global _applied
  if _applied:
    return True
  if os.environ.get(ENV, '1').strip().lower() in ('0', 'false', 'no'):
    return False
  libc = _glibc()
  if libc is None:
    return False
  for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0),
                       (M_TRIM_THRESHOLD, _NEVER)):
    if libc.mallopt(param, value) != 1:
      raise RuntimeError(f'glibc mallopt({param}, {value}) refused')
  _applied = True
  return True
