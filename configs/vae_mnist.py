"""Conv VAE on dynamically binarized MNIST, Bernoulli likelihood: the classic NLL benchmark.

  python -m gen_jax.main --config=configs/vae_mnist.py --workdir=/tmp/vae_mnist \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Runtime: about 27-29 minutes on 2 CPU cores (25,000 steps of batch 128, 15-16 steps/s).
Expected: test NLL 84.57 nats (importance-weighted, k=1000, all 10,000 test images; run
--mode=eval --config.eval.only=likelihood, 8 minutes) and test -ELBO 88.69 nats; see
experiments/BASELINES.md. Published single-stochastic-layer VAEs: 86.8-89.8 nats.
"""

from gen_jax.config_lib import classifier_fid, family_config


def get_config():
  config = family_config('vae')
  config.data.update(name='mnist_idx', binarize=True)
  config.optim.update(schedule='cosine', warmup_steps=500)
  config.train.num_steps = 25000
  config.train.log_every = 500
  config.checkpoint.every_steps = config.sample.every_steps = 5000
  config.evals.likelihood.num_examples = 10000
  config.evals.fid = classifier_fid('runs/classifier_mnist')
  return config
