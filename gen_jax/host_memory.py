"""Transparent huge pages for the host memory XLA:CPU allocates on every step.

XLA:CPU allocates each executable's temporary buffer with malloc on every call (801 MB for the
small DDPM UNet's train step at batch 32, 252 MB for the 64x64 DCGAN's). glibc serves any
allocation over 32 MiB with a fresh mmap, so the kernel faults the whole buffer in again, 4 KiB
at a time, at every step: 197,000 minor page faults and 0.33 s of kernel time per UNet step on
2 cores. glibc's `glibc.malloc.hugetlb=1` tunable makes malloc ask for transparent huge pages
(madvise), 2 MiB at a time: 1,200 faults and 0.07 s per step, and the step went from
1,176-1,345 to 1,024-1,069 ms (README, "Speed on CPU"). glibc reads tunables only when a
process starts, so the command-line entry points re-execute themselves once with it set.
"""

import os
import platform
import sys

TUNABLE = 'glibc.malloc.hugetlb'


def with_huge_pages(tunables: str | None) -> str | None:
  """Returns the GLIBC_TUNABLES value `tunables` (colon-separated name=value pairs) with
  `glibc.malloc.hugetlb=1` added, or None where it already sets that tunable: the user's
  own setting (e.g. `glibc.malloc.hugetlb=0`) wins."""
  names = [pair.split('=')[0] for pair in (tunables or '').split(':')]
  if TUNABLE in names:
    return None
  return f'{tunables}:{TUNABLE}=1' if tunables else f'{TUNABLE}=1'


def reexec_with_huge_pages() -> None:
  """Replaces this process by the same command (same pid, argv and interpreter options) with
  `glibc.malloc.hugetlb=1` in GLIBC_TUNABLES. Returns without doing anything outside Linux
  with glibc, or where GLIBC_TUNABLES already sets the tunable (so it re-executes at most
  once). Call it first thing in a `__main__` block, before any work is done."""
  if sys.platform != 'linux' or platform.libc_ver()[0] != 'glibc':
    return
  tunables = with_huge_pages(os.environ.get('GLIBC_TUNABLES'))
  if tunables is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
              {**os.environ, 'GLIBC_TUNABLES': tunables})
