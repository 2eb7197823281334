"""A small classifier of scikit-learn's 8x8 digits: the feature network of the digits
configs' classifier-space FID (`features='classifier:runs/classifier_digits'`).

  python -m gen_jax.main --config=configs/classifier_digits.py --workdir=runs/classifier_digits

Runtime: seconds on 2 CPU cores. Expected: test accuracy above 0.9 (the eval line in
metrics.jsonl).
"""

from gen_jax.config_lib import family_config


def get_config():
  config = family_config('classifier')
  config.data.update(name='digits', image_size=8, batch_size=32)
  config.model.update(channels=(16,), features=32)
  config.optim.update(learning_rate=0.003, ema_decay=0.0)
  config.train.num_steps = config.checkpoint.every_steps = 500
  config.eval.batch_size = 99
  config.evals.likelihood.update(every_steps=500, num_examples=297)
  return config
