"""Which machine a benchmark ran on, for its output: the same net's speed relative to
PyTorch differs between CPU models (README, "Speed on CPU"). Standard library only, so the
PyTorch reference scripts import it too."""

import os
import platform


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (Linux), else `platform.processor()`."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown CPU'


def description() -> str:
  """'machine <CPU model>, <n> cores usable, malloc <LD_PRELOAD's library or the libc's>'."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  malloc = os.environ.get('LD_PRELOAD') or f'{platform.libc_ver()[0] or "libc"} default'
  return f'machine {cpu_model()}, {cores} cores usable, malloc {malloc}'
