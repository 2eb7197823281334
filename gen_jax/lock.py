"""One training run per workdir: an advisory lock held for the life of the trainer.

`fcntl.flock` on `WORKDIR/.lock`: the kernel drops it when the process ends, however it
ends (SIGKILL and preemption included), so there is no stale lock to clean up. The file
holds the owner's host and pid for the error message. Local and most network file systems
honour it; a shared file system without flock support gets no protection (see README).
"""

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator

from gen_jax import layout
from gen_jax.errors import UserError


@contextlib.contextmanager
def hold_workdir(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock; raises a UserError naming the holder if a live run has it."""
  fd = os.open(layout.lock_file(workdir), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors='replace').strip() or 'unknown'
      raise UserError(f'workdir {workdir} is in use by another training run ({holder}); '
                      'wait for it to finish or use another --workdir') from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'host {socket.gethostname()}, pid {os.getpid()}\n'.encode(), 0)
    yield
  finally:
    os.close(fd)  # closing releases the lock
