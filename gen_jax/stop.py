"""Stopping a run gracefully: SIGTERM (what schedulers send before preemption) and SIGINT
(Ctrl-C) ask the training loop to finish its step, save a checkpoint and exit; a second
signal stops at once.

In a multi-process run a signal may reach only some processes, so the processes agree on
stopping at the logging cadence (one all-gather of a flag); a single process checks at
every step.
"""

import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_STATUS = {signal.SIGTERM: 0, signal.SIGINT: 130}  # 0: schedulers requeue the job


class Stopped(Exception):
  """The run stopped at `step` on signal `signum`, with a checkpoint of that step saved."""

  def __init__(self, step: int, signum: int, checkpoint: str):
    super().__init__(f'stopped at step {step} ({signal.Signals(signum).name}), checkpoint '
                     f'saved in {checkpoint}')
    self.step, self.signum = step, signum


@contextlib.contextmanager
def on_signals() -> Iterator[Callable[[], int]]:
  """Within it, the first SIGTERM or SIGINT is recorded, not acted on; a second one gets the
  default action (the process ends at once). Yields a function returning the recorded
  signal's number (0: none)."""
  received: list[int] = []

  def record(signum: int, frame) -> None:
    del frame
    if received:
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
    received.append(signum)

  previous = {s: signal.signal(s, record) for s in SIGNALS}
  try:
    yield lambda: received[0] if received else 0
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def agreed(signum: int, process_count: int, sync_now: bool) -> int:
  """The signal the processes stop on: this process's own when it runs alone; else, at the
  steps where `sync_now`, the first one any process received (0: none)."""
  if process_count == 1:
    return signum
  if not sync_now:
    return 0
  gathered = np.asarray(multihost_utils.process_allgather(np.int32(signum)))
  return int(next((s for s in gathered.ravel() if s), 0))
