"""The class-conditional `edm_mnist`: the same EDM denoiser with a label embedding added to
the noise-level embedding, 10% label dropout, and classifier-free guidance (Ho & Salimans
2022) in EDM's Heun sampler; the same 7,000 steps.

  python -m gen_jax.main --config=configs/edm_mnist_cond.py --workdir=runs/edm_mnist_cond \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Samples ask for the classes 0-9 in turn (`sample.labels` picks others); grids show one row
per class. `--config.sample.guidance=W` sets the guidance weight for sampling and evaluation.
"""

from gen_jax.config_lib import config_beside


def get_config():
  config = config_beside(__file__, 'edm_mnist')
  config.model.num_classes = 10
  config.diffusion.label_dropout = 0.1
  config.sample.guidance = 1.0
  return config
