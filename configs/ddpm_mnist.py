"""A small DDPM on MNIST that trains on 2 CPU cores.

  python -m gen_jax.main --config=configs/ddpm_mnist.py --workdir=/tmp/ddpm_mnist \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Runtime: 42 min 47 s on 2 CPU cores (5,000 steps of batch 64, ~2 steps/s). Expected:
recognizable, diverse digits (docs/ddpm_mnist_samples.png; DDIM, 50 trailing steps, EMA);
test bound 1.71 bits/dim (200 test images, all 1,000 terms, fixed-small variance) and, in
classifier space (configs/classifier_mnist.py), FID 88.2 on 10,000 samples (precision 0.54,
recall 0.88): see experiments/BASELINES.md. The eval of both took 37 minutes.
"""

from gen_jax.config_lib import classifier_fid, family_config


def get_config():
  config = family_config('ddpm')
  config.data.update(name='mnist_idx', batch_size=64)
  config.model.update(ch=32, ch_mult=(1, 2, 2), attn_resolutions=(7,), num_res_blocks=1,
                      dropout=0.0)
  config.diffusion.schedule = 'cosine'
  config.sample.update(sampler='ddim', steps=50, spacing='trailing', variance='small')
  config.optim.update(learning_rate=1e-3, schedule='cosine', warmup_steps=200, ema_decay=0.999)
  config.train.num_steps = 5000
  config.checkpoint.every_steps = config.sample.every_steps = 1000
  config.evals.likelihood.num_examples = 500
  config.evals.fid = classifier_fid('runs/classifier_mnist')
  return config
