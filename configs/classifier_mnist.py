"""MNIST classifier whose penultimate features define FID in classifier space.

  python -m gen_jax.main --config=configs/classifier_mnist.py --workdir=runs/classifier_mnist \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Its workdir is then the feature network of a sample_quality evaluator with
`features='classifier:runs/classifier_mnist'` (the MNIST configs' `fid`).
Runtime: about 5 minutes on 2 CPU cores (4,000 steps of batch 128, ~13 steps/s).
Expected: test accuracy 99.27% on all 10,000 test images (eval line in metrics.jsonl);
99.22% already at step 2,000.
"""

from gen_jax.config_lib import family_config


def get_config():
  config = family_config('classifier')
  config.data.name = 'mnist_idx'
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 200
  config.train.num_steps = 4000
  config.train.log_every = 200
  config.checkpoint.every_steps = 2000
  config.evals.likelihood.update(every_steps=2000, num_examples=10000)
  config.eval.batch_size = 500
  return config
