"""MNIST classifier whose penultimate features define FID in classifier space.

  python -m gen_jax.main --config=configs/classifier_mnist.py --workdir=runs/classifier_mnist \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Its workdir is then the feature network of `eval.features='classifier:runs/classifier_mnist'`.
Runtime: about 5 minutes on 2 CPU cores (4,000 steps of batch 128, ~13 steps/s).
Expected: test accuracy 99.27% on all 10,000 test images (eval line in metrics.jsonl);
99.22% already at step 2,000.
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'classifier'
  config.data.name = 'mnist_idx'
  config.data.image_size = 28
  config.data.batch_size = 128

  config.model = dict(channels=(32, 64), features=128, num_classes=10)
  config.optim.learning_rate = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 200
  config.optim.ema_decay = 0.999

  config.train.num_steps = 4000
  config.train.log_every = 200
  config.checkpoint.every_steps = 2000
  config.sample.every_steps = 0
  config.eval.every_steps = 2000
  config.eval.num_examples = 10000
  config.eval.batch_size = 500
  return config
