"""DCGAN on CelebA faces at 64x64 (Radford et al. 2016): the seed's face-generation case.

  python -m gen_jax.main --config=configs/dcgan_celeba64.py --workdir=runs/dcgan_celeba64 \
      --config.data.manual_dir=DIR_WITH_img_align_celeba.zip

Data: CelebA's aligned faces, img_align_celeba.zip and list_eval_partition.txt (with
list_attr_celeba.txt for the 40 attributes) from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html,
center-cropped 108 -> 64 once, when prepared into data.data_dir (README, "Datasets").
The model is PyTorch's DCGAN example exactly: G 512-256-128-64 from a 4x4 grid (3,576,704
parameters), D 64-128-256-512 (2,765,568), no conv biases, batch 64, Adam 2e-4 / beta1 0.5.
Not yet run here (no GPU); benchmarks/train_throughput.py times its step.
Expected on an accelerator: recognisable faces within a few epochs (~3k steps per epoch).
"""

from gen_jax.config_lib import evaluator, family_config


def get_config():
  config = family_config('gan')
  config.data.update(name='celeb_a', image_size=64, crop_size=108, channels=3, batch_size=64)
  config.model.update(g_channels=(512, 256, 128, 64), d_channels=(64, 128, 256, 512))
  config.train.num_steps = 50000
  config.evals.fid = evaluator('sample_quality', metrics=('fid',), features='inception_v3_fid')
  return config
