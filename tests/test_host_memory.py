"""Huge pages for malloc: the GLIBC_TUNABLES value, the re-execution, and their effect."""

import os
import subprocess
import sys

import pytest

from gen_jax import host_memory

_THP_MODE = '/sys/kernel/mm/transparent_hugepage/enabled'


@pytest.mark.parametrize('tunables, expected', [
    (None, 'glibc.malloc.hugetlb=1'),
    ('', 'glibc.malloc.hugetlb=1'),
    ('glibc.malloc.arena_max=2', 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'),
    ('glibc.malloc.hugetlb=0', None),
    ('glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2', None),
    ('glibc.malloc.hugetlb_x=1', 'glibc.malloc.hugetlb_x=1:glibc.malloc.hugetlb=1'),
])
def test_with_huge_pages_adds_the_tunable_unless_it_is_set(tunables, expected):
  assert host_memory.with_huge_pages(tunables) == expected


def _run(code: str, *args: str, tunables: str | None = None) -> str:
  env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  if tunables is not None:
    env['GLIBC_TUNABLES'] = tunables
  return subprocess.run([sys.executable, '-u', '-c', code, *args], env=env, check=True,
                        capture_output=True, text=True, timeout=120).stdout


_REEXEC = """
import os, sys
print('before', os.getpid())
from gen_jax import host_memory
host_memory.reexec_with_huge_pages()
print('after', os.getpid(), os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc tunables are Linux-only')
def test_reexec_keeps_pid_and_arguments_and_adds_the_tunable_once():
  lines = _run(_REEXEC, 'a', '--b=c', tunables='glibc.malloc.arena_max=2').splitlines()
  pid = lines[0].split()[1]
  # Once before the exec, once after it (the re-executed process does not exec again).
  assert lines == [f'before {pid}', f'before {pid}',
                   f"after {pid} glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1 ['a', '--b=c']"]


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc tunables are Linux-only')
def test_reexec_leaves_a_users_own_setting_alone():
  lines = _run(_REEXEC, tunables='glibc.malloc.hugetlb=0').splitlines()
  assert len(lines) == 2 and lines[1].endswith("glibc.malloc.hugetlb=0 []")


_FAULTS = """
import ctypes, resource
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype = ctypes.c_void_p
size = 256 << 20  # over glibc's 32 MiB mmap threshold, like XLA's per-step buffers
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ctypes.memset(libc.malloc(size), 1, size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not os.path.exists(_THP_MODE) or '[never]' in open(_THP_MODE).read(),
                    reason='this kernel has no transparent huge pages')
def test_the_tunable_cuts_the_page_faults_of_a_large_allocation():
  small_pages = int(_run(_FAULTS, tunables=''))
  huge_pages = int(_run(_FAULTS, tunables='glibc.malloc.hugetlb=1'))
  assert small_pages >= (256 << 20) // 4096  # one fault per 4 KiB page
  assert huge_pages < small_pages // 20
