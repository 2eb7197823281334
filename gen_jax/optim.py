"""Optimizers and learning-rate schedules from `config.optim`."""

import optax
from ml_collections import ConfigDict

from gen_jax.errors import ConfigError

OPTIMIZERS = ('adam', 'adamw', 'sgd')
SCHEDULES = ('constant', 'cosine')


def learning_rate_schedule(optim: ConfigDict, num_steps: int) -> optax.Schedule:
  """Linear warm-up over `optim.warmup_steps`, then constant or cosine decay to 0."""
  if optim.schedule not in SCHEDULES:
    raise ConfigError(f'optim.schedule={optim.schedule!r}: expected one of {SCHEDULES}')
  if optim.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, optim.learning_rate, optim.warmup_steps, max(num_steps, optim.warmup_steps + 1))
  if optim.warmup_steps:
    return optax.join_schedules([
        optax.linear_schedule(0.0, optim.learning_rate, optim.warmup_steps),
        optax.constant_schedule(optim.learning_rate)], [optim.warmup_steps])
  return optax.constant_schedule(optim.learning_rate)


def make_optimizer(optim: ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """Returns grad-norm clipping chained with the optimizer.

  The clip's place in the chain holds an empty state whether `optim.grad_clip` is 0 (no
  clipping) or not, so turning it on later keeps the optimizer state's structure and the run
  can resume.
  """
  lr = learning_rate_schedule(optim, num_steps)
  if optim.name == 'adam':
    opt = optax.adam(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps)
  elif optim.name == 'adamw':
    opt = optax.adamw(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                      weight_decay=optim.weight_decay)
  elif optim.name == 'sgd':
    opt = optax.sgd(lr, momentum=optim.momentum or None)
  else:
    raise ConfigError(f'optim.name={optim.name!r}: expected one of {OPTIMIZERS}')
  # optax.identity() has the clip's (empty) state and skips computing an unused norm.
  clip = optax.clip_by_global_norm(optim.grad_clip) if optim.grad_clip else optax.identity()
  return optax.chain(clip, opt)
