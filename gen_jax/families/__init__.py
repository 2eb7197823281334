"""Model families: each turns a config into a `Family`, the pure functions the trainer and
the evaluation call (init, train and eval steps, and the optional sample, reconstruct and
features).

Every function is per-device code: the runner maps it over the 'data' mesh axis, and a
family reduces across devices with `gen_jax.parallel.pmean` / `psum` where it must.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from ml_collections import ConfigDict

from gen_jax.errors import ConfigError
from gen_jax.nn import kernels


class Family(NamedTuple):
  """The contract between a family and the trainer.

  init(rng, images [B, H, W, C] in [-1, 1]) -> TrainState
  train_step(state, batch, rng) -> (state, {name: scalar}), batch = {'image', 'label', 'id'}
  eval_step(state, batch, rng) -> {name: [b] per-example values}
  sample(params, rng, ids [n]) -> images [n, H, W, C] in [-1, 1], one key per sample id,
      or None for a family that does not generate (the classifier)
  reconstruct(params, images [b, H, W, C], labels [b]) -> images, or None where it means
      nothing
  features(params, images [b, H, W, C]) -> (features [b, D], logits [b, K]), or None: a
      feature network for sample-quality metrics
  networks: the top-level parameter sub-trees that are networks of their own (summary
      counts each); () for one network
  edit(params, rng, ids [n], images [n, H, W, C], masks [n, H, W, 1], labels [n]) ->
      images [n, H, W, C] in [-1, 1]: the given images regenerated where mask is 0 (--mode=
      edit), or None for a family that cannot
  """
  name: str
  init: Callable[..., Any]
  train_step: Callable[..., Any]
  eval_step: Callable[..., Any]
  sample: Callable[..., Any] | None
  reconstruct: Callable[..., Any] | None = None
  features: Callable[..., Any] | None = None
  networks: tuple[str, ...] = ()
  edit: Callable[..., Any] | None = None


def get_family(config: ConfigDict) -> Family:
  """Returns the family that `config.family` names, built from `config`, its functions
  traced with the layer kernels that `config.runtime.kernels` chooses, computing in
  `config.model.dtype`."""
  from gen_jax.families import classifier, ddpm, gan, vae  # pylint: disable=g-import-not-at-top
  makers = {'vae': vae.make, 'classifier': classifier.make, 'ddpm': ddpm.make, 'gan': gan.make}
  if config.family not in makers:
    raise ConfigError(f'family={config.family!r}: expected one of {sorted(makers)}')
  choice, dtype = config.runtime.kernels, config.model.get('dtype', 'float32')
  try:
    kernels.check(choice, dtype)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  family = makers[config.family](config)
  return family._replace(**{
      field: kernels.bind(choice, fn, dtype) for field, fn in family._asdict().items()
      if callable(fn)})
