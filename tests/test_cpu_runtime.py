"""The CPU runtime settings: which backend they apply to, the XLA flag, the malloc the entry
points re-execute with (the environment, the re-execution, the effect)."""

import os
import subprocess
import sys

import pytest

from gen_jax import cpu_runtime

_THP_MODE = '/sys/kernel/mm/transparent_hugepage/enabled'
_TCMALLOC = cpu_runtime.tcmalloc_library()
_LINUX = pytest.mark.skipif(not sys.platform.startswith('linux'),
                            reason='LD_PRELOAD and glibc tunables are Linux-only')


@pytest.mark.parametrize('tunables, expected', [
    (None, 'glibc.malloc.hugetlb=1'),
    ('', 'glibc.malloc.hugetlb=1'),
    ('glibc.malloc.arena_max=2', 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'),
    ('glibc.malloc.hugetlb=0', None),
    ('glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2', None),
    ('glibc.malloc.hugetlb_x=1', 'glibc.malloc.hugetlb_x=1:glibc.malloc.hugetlb=1'),
])
def test_with_huge_pages_adds_the_tunable_unless_it_is_set(tunables, expected):
  assert cpu_runtime.with_huge_pages(tunables) == expected


_LIB = 'libtcmalloc_minimal.so.4'
_QUIET = cpu_runtime.TCMALLOC_SETTINGS


@pytest.mark.parametrize('environ, library, expected', [
    ({}, _LIB, {**_QUIET, 'LD_PRELOAD': _LIB}),
    ({'LD_PRELOAD': 'libfoo.so:libbar.so'}, _LIB,
     {**_QUIET, 'LD_PRELOAD': f'{_LIB} libfoo.so libbar.so'}),
    ({'TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD': '5'}, _LIB,
     {'TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD': '5', 'LD_PRELOAD': _LIB}),
    ({'LD_PRELOAD': '/opt/lib/libjemalloc.so.2'}, _LIB, None),  # the user's own allocator
    ({'LD_PRELOAD': _LIB}, _LIB, None),  # already re-executed
    ({'LD_PRELOAD': 'libm.so.6'}, 'libm.so.6', None),  # GEN_JAX_MALLOC=libm.so.6, re-executed
    ({}, None, {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}),
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, None, None),
])
def test_malloc_environment(environ, library, expected):
  assert cpu_runtime.malloc_environment(environ, library) == expected


def test_chosen_library_follows_gen_jax_malloc():
  assert cpu_runtime.chosen_library({'GEN_JAX_MALLOC': 'libc'}) is None
  assert cpu_runtime.chosen_library({'GEN_JAX_MALLOC': '/x/libmimalloc.so'}) == '/x/libmimalloc.so'
  assert cpu_runtime.chosen_library({}) == _TCMALLOC


def _run(code: str, *args: str, **environ: str) -> str:
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', 'LD_PRELOAD', 'GEN_JAX_MALLOC', 'XLA_FLAGS')}
  return subprocess.run([sys.executable, '-u', '-c', code, *args], env={**env, **environ},
                        check=True, capture_output=True, text=True, timeout=120).stdout


_REEXEC = """
import os, sys
print('before', os.getpid())
from gen_jax import cpu_runtime
cpu_runtime.reexec_with_fast_malloc()
print('after', os.getpid(), os.environ.get('LD_PRELOAD'), os.environ.get('GLIBC_TUNABLES'),
      sys.argv[1:])
"""


@_LINUX
def test_reexec_keeps_pid_and_arguments_and_preloads_the_library_once():
  # libm is a real library (every Python has it loaded), so the loader preloads it quietly.
  lines = _run(_REEXEC, 'a', '--b=c', GEN_JAX_MALLOC='libm.so.6').splitlines()
  pid = lines[0].split()[1]
  # Once before the exec, once after it (the re-executed process does not exec again).
  assert lines == [f'before {pid}', f'before {pid}', f"after {pid} libm.so.6 None ['a', '--b=c']"]


_CHOICE = """
import os
from gen_jax import cpu_runtime
cpu_runtime.reexec_with_fast_malloc()
print(os.environ.get('GEN_JAX_MALLOC'))
"""


@_LINUX
def test_reexec_records_its_choice_for_the_new_process_and_its_children():
  assert _run(_CHOICE).strip() == (_TCMALLOC or 'libc')


@_LINUX
def test_without_a_library_it_re_executes_with_huge_pages_unless_the_user_set_them():
  lines = _run(_REEXEC, GEN_JAX_MALLOC='libc', GLIBC_TUNABLES='glibc.malloc.arena_max=2')
  assert lines.splitlines()[2].endswith(
      "None glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1 []")
  lines = _run(_REEXEC, GEN_JAX_MALLOC='libc', GLIBC_TUNABLES='glibc.malloc.hugetlb=0')
  assert len(lines.splitlines()) == 2 and lines.endswith("None glibc.malloc.hugetlb=0 []\n")


# XLA's step buffer: allocated and freed on every call, from a worker thread.
_FAULTS = """
import ctypes, resource, threading
libc = ctypes.CDLL(None)  # malloc as the process resolves it: LD_PRELOAD's first
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 256 << 20  # over glibc's 32 MiB mmap threshold
faults = []
def steps():
  for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = libc.malloc(size)
    ctypes.memset(buffer, 1, size)
    libc.free(buffer)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=steps)
thread.start()
thread.join()
print(*faults)
"""


@pytest.mark.skipif(not os.path.exists(_THP_MODE) or '[never]' in open(_THP_MODE).read(),
                    reason='this kernel has no transparent huge pages')
def test_huge_pages_cut_the_page_faults_of_a_large_allocation():
  small_pages = [int(n) for n in _run(_FAULTS).split()]
  huge_pages = [int(n) for n in _run(_FAULTS, GLIBC_TUNABLES='glibc.malloc.hugetlb=1').split()]
  assert min(small_pages) >= (256 << 20) // 4096  # one fault per 4 KiB page, every time
  assert max(huge_pages) < min(small_pages) // 20


@pytest.mark.skipif(_TCMALLOC is None, reason='tcmalloc is not installed (Debian/Ubuntu: '
                    'apt-get install libtcmalloc-minimal4)')
def test_tcmalloc_reuses_a_freed_large_allocation_without_page_faults():
  glibc = [int(n) for n in _run(_FAULTS).split()]
  tcmalloc = [int(n) for n in _run(_FAULTS, LD_PRELOAD=_TCMALLOC).split()]
  assert min(glibc) >= (256 << 20) // 4096  # glibc faults the buffer in again every time
  assert tcmalloc[0] >= (256 << 20) // 4096  # the first allocation is new memory ...
  assert max(tcmalloc[1:]) < glibc[0] // 100  # ... the next ones reuse it


def test_the_backend_is_the_cpu_unless_an_accelerator_plugin_is_installed(monkeypatch):
  assert cpu_runtime.accelerator_plugins() == []  # this machine has jax's CPU wheels only
  assert cpu_runtime.backend_is_cpu({})
  assert cpu_runtime.backend_is_cpu({'JAX_PLATFORMS': 'cpu'})
  assert not cpu_runtime.backend_is_cpu({'JAX_PLATFORMS': 'cuda,cpu'})
  monkeypatch.setattr(cpu_runtime, 'accelerator_plugins', lambda: ['xla_cuda12'])
  assert not cpu_runtime.backend_is_cpu({})
  assert cpu_runtime.backend_is_cpu({'JAX_PLATFORMS': 'cpu'})


@pytest.mark.parametrize('environ, expected', [
    ({}, f'{cpu_runtime.YNN_FLAG}='),
    ({'XLA_FLAGS': '--xla_force_host_platform_device_count=8'},
     f'--xla_force_host_platform_device_count=8 {cpu_runtime.YNN_FLAG}='),
    ({'XLA_FLAGS': f'{cpu_runtime.YNN_FLAG}=default'}, f'{cpu_runtime.YNN_FLAG}=default'),
    ({'XLA_FLAGS': '--a', 'GEN_JAX_KEEP_XLA_FLAGS': '1'}, '--a')])
def test_xla_flags(environ, expected):
  cpu_runtime.set_xla_flags(environ)
  assert environ.get('XLA_FLAGS') == expected


_TUNE = """
import os
from gen_jax import cpu_runtime
cpu_runtime.tune()
print(os.environ.get('XLA_FLAGS'), os.environ.get('GEN_JAX_MALLOC'))
"""


@_LINUX
def test_tune_sets_the_flag_and_the_malloc_on_the_cpu_only():
  assert _run(_TUNE, JAX_PLATFORMS='cpu').split() == [f'{cpu_runtime.YNN_FLAG}=',
                                                      _TCMALLOC or 'libc']
  assert _run(_TUNE, JAX_PLATFORMS='cuda').split() == ['None', 'None']
