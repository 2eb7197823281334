"""Classifier family: cross-entropy on labels. It trains through the same loop and
checkpoints as the generative families, and its penultimate features define FID in
classifier space (a sample_quality evaluator's `features='classifier:WORKDIR'`)."""

import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from gen_jax import optim, parallel
from gen_jax import state as state_lib
from gen_jax.errors import ConfigError
from gen_jax.families import Family
from gen_jax.models.classifier import Classifier


def make(config: ConfigDict) -> Family:
  """Builds the classifier's init / train_step / eval_step / features from `config`."""
  m = config.model
  if config.data.image_size % 2 ** len(m.channels):
    raise ConfigError(f'data.image_size={config.data.image_size} must divide by '
                      f'2**len(model.channels)={2 ** len(m.channels)}')
  model = Classifier(tuple(m.channels), m.features, m.num_classes)
  tx = optim.make_optimizer(config.optim, config.train.num_steps)

  def per_example(params, batch):
    logits, _ = model.apply({'params': params}, batch['image'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    accuracy = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
    return loss, accuracy

  def init(rng, images):
    return state_lib.create(model.init(rng, images[:1])['params'], tx)

  def train_step(state, batch, rng):
    del rng  # deterministic

    def loss_fn(params, batch):
      loss, accuracy = per_example(params, batch)
      return parallel.pmean(jnp.mean(loss)), {'accuracy': parallel.pmean(jnp.mean(accuracy))}

    (loss, metrics), grads = state_lib.loss_and_grads(loss_fn, state.params, batch,
                                                      config.train.grad_accum_steps)
    state, norms = state_lib.apply_gradients(state, grads, tx, config.optim.ema_decay)
    return state, {'loss': loss, **metrics, **norms}

  def eval_step(state, batch, rng):
    del rng
    loss, accuracy = per_example(state.ema_params, batch)
    return {'loss': loss, 'accuracy': accuracy}

  def features(params, images):
    logits, features = model.apply({'params': params}, images)
    return features, logits

  return Family('classifier', init, train_step, eval_step, sample=None, features=features)
