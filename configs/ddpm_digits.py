"""A tiny DDPM on scikit-learn's 8x8 digits, for smoke runs and tests.

  python -m gen_jax.main --config=configs/ddpm_digits.py --workdir=runs/ddpm_digits

Runtime: a few minutes on 2 CPU cores. Expected: blurry digit-like blobs after 2,000 steps;
a smoke test of the DDPM family, not a result.

Evaluators: `likelihood` (bits/dim on the 297 test digits) and `fid` (FID, KID,
precision-recall and IS of 990 samples in the space of configs/classifier_digits.py, trained
into runs/classifier_digits first), both only in --mode=eval unless given a cadence, e.g.
`--config.evals.likelihood.every_steps=200 --config.evals.fid.every_steps=500`.
"""

from gen_jax.config_lib import classifier_fid, family_config


def get_config():
  config = family_config('ddpm')
  config.data.update(name='digits', image_size=8, batch_size=64)
  config.model.update(ch=32, ch_mult=(1, 2), attn_resolutions=(4,), num_res_blocks=1,
                      dropout=0.0)
  config.diffusion.update(num_steps=200, schedule='cosine')
  config.sample.update(sampler='ddim', steps=50, variance='small')
  config.optim.update(learning_rate=1e-3, warmup_steps=100, ema_decay=0.99)
  config.train.num_steps = 2000
  config.checkpoint.every_steps = config.sample.every_steps = 1000
  config.eval.batch_size = 99
  config.evals.likelihood.num_examples = 297
  config.evals.fid = classifier_fid('runs/classifier_digits', num_samples=990, reference_num=297)
  return config
