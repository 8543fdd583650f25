"""experiments/perf/cpu_profile.py: perf samples sorted into library groups.

Parsing and grouping only: what a real profile of this machine shows
(symbol names, busy threads) is the script's output, not a test.
"""

import numpy as np
import pytest

from experiments.perf import cpu_profile

# Lines as `perf report --no-children --sort dso,sym --stdio` prints them
# (shortened symbols), with its comment header.
REPORT = """\
# Samples: 19K of event 'cpu-clock:pppH'
#
# Overhead  Shared Object       Symbol
# ........  ..................  ......
#
    28.78%  libjax_common.so    [.] ynn::dot_fp32_5x64x1_1x16x1_avx512
     5.85%  libjax_common.so    [.] Eigen::internal::gemm_pack_colmajor_block<float, long>
     5.75%  libc.so.6           [.] _int_malloc
     2.26%  libjax_common.so    [.] ynn::sum_kn_fp32_avx512
     0.47%  libjax_common.so    [.] slinky::function_ref<void (void**, long)>::get_impl
     0.33%  libjax_common.so    [.] std::__move_merge<xla::cpu::internal::SortIterator<2ul>>
     0.96%  [kernel.kallsyms]   [k] _raw_spin_unlock_irqrestore
     0.90%  libc.so.6           [.] __memmove_avx512_unaligned_erms
     0.22%  [JIT] tid 11477     [.] 0x00007fcddbc1463e
     0.07%  libpython3.11.so.1.0  [.] _PyEval_EvalFrameDefault
"""


def test_groups_of_symbols():
  assert cpu_profile.group_of('libjax_common.so [.] ynn::dot_fp32_3x64') == (
      'ynn matmul')
  assert cpu_profile.group_of('libjax_common.so [.] ynn::transpose_x32') == (
      'ynn other')
  assert cpu_profile.group_of('[JIT] tid 7 [.] 0x00007f0fc03dd63e') == 'xla jit'
  assert cpu_profile.group_of('libc.so.6 [.] unlink_chunk.constprop.0') == (
      'malloc/free')
  assert cpu_profile.group_of('libc.so.6 [.] freelocale') == 'other'
  assert cpu_profile.group_of('libpython3.11.so [.] _PyEval_X') == 'other'


def test_shares_add_up_and_follow_the_report():
  got = cpu_profile.shares(REPORT.splitlines())
  assert set(got) == set(cpu_profile.GROUP_NAMES)
  total = 28.78 + 5.85 + 5.75 + 2.26 + 0.47 + 0.33 + 0.96 + 0.90 + 0.22 + 0.07
  np.testing.assert_allclose(sum(got.values()), 1.0)
  expected = {'ynn matmul': 28.78, 'eigen': 5.85, 'malloc/free': 5.75,
              'ynn other': 2.26 + 0.47, 'sort': 0.33, 'kernel': 0.96,
              'memcpy/memset': 0.90, 'xla jit': 0.22, 'other': 0.07}
  for group, percent in expected.items():
    np.testing.assert_allclose(got[group], percent / total, err_msg=group)


def test_timeline_counts_busy_threads_per_slice():
  lines = [  # perf script -F tid,time,ip,sym,dso; 1000 Hz -> 1 ms slices
      '101 10.0000:  7f01 ynn::dot_fp32_3x64 (/x/libjax_common.so)',
      '102 10.0001:  7f02 [unknown] (/tmp/perf-100.map)',
      '101 10.0010:  7f01 ynn::dot_fp32_3x64 (/x/libjax_common.so)',
      '102 10.0012:  7f02 _int_malloc (/lib/libc.so.6)',
      '101 10.0020:  7f01 ynn::dot_fp32_4x64 (/x/libjax_common.so)',
      '101 10.0025:  7f01 ynn::dot_fp32_4x64 (/x/libjax_common.so)',
      '102 10.0031:  7f02 [unknown] (/tmp/perf-100.map)',
      # slice 4 empty: no thread on a CPU
      '101 10.0050:  7f01 std::__move_merge<SortIterator> (/x/lib.so)',
      'not a sample line',
  ]
  got = cpu_profile.timeline(lines, freq=1000)
  np.testing.assert_allclose(
      [got['0'], got['1'], got['2+']], [1 / 6, 3 / 6, 2 / 6])
  assert got['lone ynn matmul'] == pytest.approx(1 / 6)   # slice 2
  assert got['lone xla jit'] == pytest.approx(1 / 6)      # slice 3
  assert got['lone sort'] == pytest.approx(1 / 6)         # slice 5
  assert cpu_profile.timeline(['nothing'], freq=1000) == {}
