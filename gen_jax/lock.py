"""One training run per workdir: a lock held for the life of the trainer.

A local workdir: `fcntl.flock` on `WORKDIR/.lock`. The kernel drops it when the process
ends, however it ends (SIGKILL and preemption included), so there is no stale lock to clean
up. The file holds the owner's host and pid for the error message. Local and most network
file systems honour it; a shared file system without flock support gets no protection.

A `gs://` workdir has no flock: `WORKDIR/.lock` is a lease object, "host H, pid P,
heartbeat T" (T in seconds since the epoch, the holder's clock), rewritten every
HEARTBEAT_S seconds by a daemon thread. A lease is stale, and taken over with one warning
line, when its heartbeat is older than STALE_AFTER_S, or at once when its holder is a
process of this host that no longer exists (a run killed and restarted on the same
machine). Every write is a GCS generation precondition (create only if absent, replace only
the generation that was read), so two runs racing for one lease cannot both win, and a
holder whose lease was taken over (its heartbeat stalled past STALE_AFTER_S: a suspended VM)
finds out at its next heartbeat and at its next checkpoint stops with one line (the local
GCS emulator of tests/test_object_store.py ignores preconditions: that race is untested
there). Limits: the hosts' clocks must agree to well within STALE_AFTER_S; a holder stalled
that long may still write what it had in flight before it notices.
"""

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

from gen_jax import layout
from gen_jax.errors import UserError

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


def _in_use(workdir: str, holder: str) -> UserError:
  return UserError(f'workdir {workdir} is in use by another training run ({holder}); '
                   'wait for it to finish or use another --workdir')


@contextlib.contextmanager
def hold_workdir(workdir: str) -> Iterator[Callable[[], None]]:
  """Holds the workdir's lock; raises a UserError naming the holder if a live run has it.

  Yields check(): raises a UserError if the lock was lost (only a gs:// lease can be).
  """
  if layout.is_object_store(workdir):
    with _hold_lease(workdir) as check:
      yield check
    return
  fd = os.open(layout.lock_file(workdir), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors='replace').strip() or 'unknown'
      raise _in_use(workdir, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{_owner()}\n'.encode(), 0)
    yield lambda: None
  finally:
    os.close(fd)  # closing releases the lock


def _owner() -> str:
  return f'host {socket.gethostname()}, pid {os.getpid()}'


def lease_text(heartbeat: float) -> str:
  """The lease object's contents: 'host H, pid P, heartbeat T'."""
  return f'{_owner()}, heartbeat {heartbeat:.0f}'


def parse_lease(text: str) -> tuple[str, int, float] | None:
  """Returns (host, pid, heartbeat) of a lease's text; None if it is not one."""
  try:
    host, pid, heartbeat = (part.split(' ', 1)[1] for part in text.strip().split(', '))
    return host, int(pid), float(heartbeat)
  except (ValueError, IndexError):
    return None


def _process_exists(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def is_stale(text: str, now: float, host: str,
             process_exists: Callable[[int], bool] = _process_exists) -> bool:
  """Whether the lease `text` may be taken over at time `now` by a process on `host`: its
  heartbeat is older than STALE_AFTER_S, its holder is a process of `host` that is gone,
  or it is not a lease at all (an object cut short)."""
  lease = parse_lease(text)
  if lease is None:
    return True
  holder_host, pid, heartbeat = lease
  return now - heartbeat > STALE_AFTER_S or (holder_host == host and not process_exists(pid))


@contextlib.contextmanager
def _hold_lease(workdir: str) -> Iterator[Callable[[], None]]:
  from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
  from google.cloud import storage  # pylint: disable=g-import-not-at-top
  bucket, name = str(layout.lock_file(workdir))[len(layout.OBJECT_STORE):].split('/', 1)
  blob = storage.Client().bucket(bucket).blob(name)
  try:
    blob.reload()
    held = blob.download_as_text(if_generation_match=blob.generation).strip()
  except exceptions.NotFound:
    held = None
  if held is not None and not is_stale(held, time.time(), socket.gethostname()):
    raise _in_use(workdir, held)
  try:  # create it, or replace the stale generation that was read: whoever writes first wins
    blob.upload_from_string(lease_text(time.time()),
                            if_generation_match=0 if held is None else blob.generation)
  except exceptions.PreconditionFailed:
    raise _in_use(workdir, 'another run took the lease just now') from None
  if held is not None:
    log.warning('took over the stale lease of workdir %s (%s)', workdir, held)
  lost: list[str] = []
  stop = threading.Event()

  def heartbeat() -> None:
    while not stop.wait(HEARTBEAT_S):
      try:
        blob.upload_from_string(lease_text(time.time()), if_generation_match=blob.generation)
      except exceptions.PreconditionFailed:
        lost.append(f'lost the lease of workdir {workdir} to another training run; stopped')
        log.error('%s', lost[0])
        return
      except Exception as e:  # the network: try again at the next beat, well within the timeout
        log.warning('refreshing the lease of workdir %s failed (%s)', workdir, e)

  def check() -> None:
    if lost:
      raise UserError(lost[0])

  thread = threading.Thread(target=heartbeat, name='gen_jax-lease', daemon=True)
  thread.start()
  try:
    yield check
  finally:
    stop.set()
    thread.join()
    if not lost:  # released: the next run need not wait for the lease to go stale
      with contextlib.suppress(Exception):
        blob.delete(if_generation_match=blob.generation)
