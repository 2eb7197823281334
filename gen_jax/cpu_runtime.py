"""Process-level settings for runs on XLA:CPU, applied by the command-line entry points
(`tune()`) and only where the backend will be the CPU; importing gen_jax changes nothing.

* XLA_FLAGS gains `--xla_cpu_experimental_ynn_fusion_type=` (no YNNPACK fusions), with which
  XLA:CPU runs the convolution nets faster (`benchmarks/train_throughput.py` measures it). XLA
  reads XLA_FLAGS when jax starts its backend; a user's own setting of the flag wins, and
  GEN_JAX_KEEP_XLA_FLAGS=1 leaves XLA_FLAGS untouched.
* The process re-executes itself once with a malloc that keeps freed memory. XLA:CPU
  allocates each executable's temporary buffer with malloc on every call and frees it after;
  glibc serves any allocation over 32 MiB with a fresh mmap and unmaps it on free, so the
  kernel faults the whole buffer in again at every step, and from XLA's worker threads no
  glibc tunable stops that (a thread arena maps anything over 64 MiB whatever
  `glibc.malloc.mmap_max` says). tcmalloc (gperftools' `libtcmalloc_minimal`, e.g. Debian's
  `libtcmalloc-minimal4`) keeps the freed spans and hands them back at the next step.
  Without it, glibc is asked for transparent huge pages (`glibc.malloc.hugetlb=1`: 2 MiB
  faults instead of 4 KiB ones). The dynamic loader and glibc read LD_PRELOAD and
  GLIBC_TUNABLES only when a process starts, hence the re-execution. `GEN_JAX_MALLOC=libc`
  keeps glibc's malloc (with huge pages); a path in `GEN_JAX_MALLOC` preloads that library.

Which backend jax will pick is decided before jax starts (and before `jax.distributed`,
which must come first): the CPU where JAX_PLATFORMS names it first, or where no accelerator
plugin (a `jax_plugins` module or entry point, or libtpu) is installed.
"""

import ctypes.util
import importlib.metadata
import importlib.util
import os
import pkgutil
import platform
import sys
from collections.abc import Mapping, MutableMapping

YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
TUNABLE = 'glibc.malloc.hugetlb'
# tcmalloc reports allocations over 1 GiB (a big model's step buffer) on stderr by default;
# such a report would end up after the CLI's one-line errors.
TCMALLOC_SETTINGS = {'TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD': str(1 << 50)}


def tcmalloc_library() -> str | None:
  """Returns the name of gperftools' tcmalloc library as the dynamic loader finds it (e.g.
  'libtcmalloc_minimal.so.4'), or None where none is installed."""
  return ctypes.util.find_library('tcmalloc_minimal') or ctypes.util.find_library('tcmalloc')


def with_huge_pages(tunables: str | None) -> str | None:
  """Returns the GLIBC_TUNABLES value `tunables` (colon-separated name=value pairs) with
  `glibc.malloc.hugetlb=1` added, or None where it already sets that tunable: the user's
  own setting (e.g. `glibc.malloc.hugetlb=0`) wins."""
  names = [pair.split('=')[0] for pair in (tunables or '').split(':')]
  if TUNABLE in names:
    return None
  return f'{tunables}:{TUNABLE}=1' if tunables else f'{TUNABLE}=1'


def preloaded(environ: Mapping[str, str]) -> list[str]:
  """Returns the libraries that LD_PRELOAD in `environ` names (space- or colon-separated)."""
  return environ.get('LD_PRELOAD', '').replace(':', ' ').split()


def preloads_malloc(environ: Mapping[str, str]) -> bool:
  """Returns whether LD_PRELOAD in `environ` names a malloc library (tcmalloc, jemalloc,
  mimalloc, tbbmalloc, ...)."""
  return any('malloc' in os.path.basename(path) for path in preloaded(environ))


def malloc_environment(environ: Mapping[str, str], library: str | None) -> dict[str, str] | None:
  """Returns the environment to re-execute with: `environ` with `library` (a malloc library)
  first in LD_PRELOAD, or with glibc's huge pages where `library` is None. None where nothing
  is to change: LD_PRELOAD already names a malloc library (ours or the user's own), or
  GLIBC_TUNABLES already sets the huge pages tunable."""
  preload = preloaded(environ)
  if preloads_malloc(environ) or library in preload:
    return None
  if library is not None:
    return {**TCMALLOC_SETTINGS, **environ, 'LD_PRELOAD': ' '.join([library, *preload])}
  tunables = with_huge_pages(environ.get('GLIBC_TUNABLES'))
  return None if tunables is None else {**environ, 'GLIBC_TUNABLES': tunables}


def chosen_library(environ: Mapping[str, str]) -> str | None:
  """Returns the malloc library to preload: `GEN_JAX_MALLOC`'s path, none for
  `GEN_JAX_MALLOC=libc`, else tcmalloc where installed."""
  choice = environ.get('GEN_JAX_MALLOC', '')
  if choice == 'libc':
    return None
  return choice or tcmalloc_library()


def reexec_with_fast_malloc() -> None:
  """Replaces this process by the same command (same pid, argv and interpreter options) in
  `malloc_environment`. Returns without doing anything outside Linux with glibc, or where
  the environment is already so (so it re-executes at most once). Call it first thing in a
  `__main__` block, before any work is done."""
  if (sys.platform != 'linux' or platform.libc_ver()[0] != 'glibc'
      or preloads_malloc(os.environ)):  # checked first: it saves the library search
    return
  library = chosen_library(os.environ)
  environ = malloc_environment(os.environ, library)
  if environ is not None:
    # The choice goes with the command, so that neither the re-executed process nor its
    # children search for the library again.
    environ['GEN_JAX_MALLOC'] = library or 'libc'
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)


def accelerator_plugins() -> list[str]:
  """The installed PJRT plugins jax would try before the CPU: `jax_plugins` modules and
  entry points (CUDA, ROCm, ...) and libtpu. Imports none of them."""
  found = [entry.name for entry in importlib.metadata.entry_points(group='jax_plugins')]
  spec = importlib.util.find_spec('jax_plugins')
  if spec is not None and spec.submodule_search_locations:
    found += [m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)]
  if importlib.util.find_spec('libtpu') is not None:
    found.append('libtpu')
  return sorted(set(found))


def backend_is_cpu(environ: Mapping[str, str]) -> bool:
  """Whether jax, once started in `environ`, will compute on the CPU (see the module doc)."""
  platforms = environ.get('JAX_PLATFORMS', '').strip()
  if platforms:
    return platforms.split(',')[0].strip() == 'cpu'
  return not accelerator_plugins()


def set_xla_flags(environ: MutableMapping[str, str]) -> None:
  """Adds YNN_FLAG (empty: no YNNPACK fusions) to XLA_FLAGS in `environ`, unless it is
  there already or GEN_JAX_KEEP_XLA_FLAGS is set."""
  flags = environ.get('XLA_FLAGS', '')
  if not environ.get('GEN_JAX_KEEP_XLA_FLAGS') and YNN_FLAG not in flags:
    environ['XLA_FLAGS'] = f'{flags} {YNN_FLAG}='.strip()


def tune() -> None:
  """On a CPU backend: sets XLA_FLAGS and re-executes with a fast malloc (at most once).
  Call it first thing in a `__main__` block, before jax starts."""
  if backend_is_cpu(os.environ):
    set_xla_flags(os.environ)
    reexec_with_fast_malloc()
