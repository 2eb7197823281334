"""Defaults every config shares, each family's defaults, and checks of values that types
alone cannot catch. A file in configs/ starts from `family_config(FAMILY)` and states only
what differs."""

import json

from ml_collections import ConfigDict, config_dict

from gen_jax.errors import UserError


def base_config() -> ConfigDict:
  """Returns the keys every config has; a config file fills in its family's keys."""
  c = ConfigDict()
  c.seed = 0
  c.family = ''

  c.data = ConfigDict()
  c.data.name = ''
  c.data.data_dir = config_dict.placeholder(str)  # None: the tfds default (~/tensorflow_datasets)
  c.data.manual_dir = config_dict.placeholder(str)
  c.data.image_size = 28
  c.data.channels = 1
  c.data.crop_size = 0  # center crop before resizing; 0: none
  c.data.batch_size = 128
  c.data.binarize = False  # dynamic binarization, a fresh draw at every visit
  c.data.random_flip = False
  c.data.num_threads = 1  # grain reader threads per process
  c.data.eval_split = 'test'

  c.optim = ConfigDict()
  c.optim.name = 'adam'
  c.optim.learning_rate = 1e-3
  c.optim.schedule = 'constant'
  c.optim.warmup_steps = 0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.0
  c.optim.momentum = 0.0
  c.optim.grad_clip = 0.0  # global-norm clip; 0: none
  c.optim.ema_decay = 0.0  # 0: ema_params follow params

  c.train = ConfigDict()
  c.train.num_steps = 1000
  c.train.log_every = 100
  c.train.profile_steps = 0  # steps traced by the JAX profiler into WORKDIR/profile; 0: none

  c.checkpoint = ConfigDict()
  c.checkpoint.every_steps = 1000
  c.checkpoint.max_to_keep = 3

  c.sample = ConfigDict()
  c.sample.every_steps = 1000  # 0: no grids during training
  c.sample.num = 64  # images written by --mode=sample
  c.sample.grid = 64  # images in the grids written during training

  c.eval = ConfigDict()
  c.eval.every_steps = 0  # 0: no eval during training
  c.eval.num_examples = 1000  # test examples for likelihood metrics; 0: none
  c.eval.batch_size = 100
  c.eval.metrics = ()  # sample-quality metrics: some of fid, kid, precision_recall, inception_score
  c.eval.num_samples = 10000  # samples generated for them
  c.eval.features = ''  # feature network: inception_v3_fid or classifier:WORKDIR
  c.eval.inception_weights = config_dict.placeholder(str)  # FID Inception weights file
  c.eval.reference_num = 10000  # examples of data.eval_split for the reference statistics
  c.eval.reference_dir = config_dict.placeholder(str)  # None: DATA_DIR/gen_jax_reference
  c.eval.watch = False  # --mode=eval: evaluate each new checkpoint until train.num_steps
  c.eval.watch_interval = 30  # seconds between looks for a new checkpoint

  c.runtime = ConfigDict()
  # The layers' implementation (gen_jax.nn.kernels): 'xla' (plain flax / lax), 'cpu' (the
  # XLA:CPU kernels) or 'auto' ('cpu' on a CPU backend, else 'xla').
  c.runtime.kernels = 'auto'
  return c


def _gan(c: ConfigDict) -> None:
  """The 32 px DCGAN of Radford et al. with the non-saturating loss, Adam 2e-4 / beta1 0.5."""
  # g_channels: widths from the base grid up; d_channels: from the image down.
  c.model = dict(arch='dcgan', z_dim=100, g_channels=(512, 256, 128), d_channels=(128, 256, 512),
                 d_norm='batch', spectral_norm=False)
  c.gan = dict(loss='non_saturating', n_critic=1, gp_weight=0.0, r1_gamma=0.0)
  c.optim.learning_rate = 2e-4  # the generator's; optim_d overrides it for D (TTUR)
  c.optim.b1 = 0.5
  c.optim.ema_decay = 0.999
  c.optim_d = dict(learning_rate=2e-4)
  c.train.log_every = 500
  c.checkpoint.every_steps = c.sample.every_steps = 5000


def _ddpm(c: ConfigDict) -> None:
  """Ho et al. (2020)'s CIFAR-10 UNet, schedule, ancestral sampler and optimizer."""
  c.model = dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                 dropout=0.1)
  c.diffusion = dict(num_steps=1000, schedule='linear', prediction='eps', min_snr_gamma=0.0,
                     learn_variance=False, vlb_weight=0.001)
  c.sample.sampler = 'ddpm'
  c.sample.steps = 1000
  c.sample.eta = 0.0
  c.sample.spacing = 'uniform'  # DDIM timesteps: uniform, trailing or quadratic
  c.sample.variance = 'large'  # small, large, or learned (with learn_variance)
  c.optim.learning_rate = 2e-4
  c.optim.warmup_steps = 5000
  c.optim.grad_clip = 1.0
  c.optim.ema_decay = 0.9999


def _vae(c: ConfigDict) -> None:
  """The conv VAE of configs/vae_mnist.py: Bernoulli likelihood, beta 1, IWAE k=1000 eval."""
  c.model = dict(channels=(32, 64), hidden=512, latent_dim=32, likelihood='bernoulli')
  c.loss = dict(beta=1.0)
  c.optim.ema_decay = 0.999
  c.eval.iw_samples = 1000  # importance samples for the NLL bound; 0: none
  c.eval.iw_chunk = 100  # of them per pass


def _classifier(c: ConfigDict) -> None:
  c.model = dict(channels=(32, 64), features=128, num_classes=10)
  c.optim.ema_decay = 0.999
  c.sample.every_steps = 0


FAMILIES = {'gan': _gan, 'ddpm': _ddpm, 'vae': _vae, 'classifier': _classifier}


def family_config(family: str) -> ConfigDict:
  """Returns `base_config()` with `family` set and that family's keys at their defaults."""
  c = base_config()
  c.family = family
  FAMILIES[family](c)
  return c


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise UserError(message)


def validate(config: ConfigDict) -> None:
  """Raises a UserError naming the first key whose value is out of range."""
  _check(bool(config.family), 'family is empty: the config file must set it')
  _check(bool(config.data.name), 'data.name is empty: the config file must set it')
  for key in ('data.image_size', 'data.channels', 'data.batch_size', 'train.num_steps',
              'train.log_every', 'checkpoint.max_to_keep', 'eval.batch_size', 'sample.grid',
              'sample.num'):
    value = _get(config, key)
    _check(value > 0, f'{key}={value}: expected a positive integer')
  for key in ('checkpoint.every_steps', 'sample.every_steps', 'eval.every_steps',
              'eval.num_examples', 'data.crop_size', 'data.num_threads', 'optim.grad_clip',
              'optim.warmup_steps', 'train.profile_steps'):
    value = _get(config, key)
    _check(value >= 0, f'{key}={value}: expected 0 or a positive integer')
  _check(0.0 <= config.optim.ema_decay < 1.0,
         f'optim.ema_decay={config.optim.ema_decay}: expected a value in [0, 1)')
  _check(not config.eval.metrics or bool(config.eval.features),
         f'eval.metrics={tuple(config.eval.metrics)} needs eval.features')
  examples = config.train.num_steps * config.data.batch_size
  _check(examples < 2 ** 31,  # example ids are int32 stream positions
         f'train.num_steps * data.batch_size = {examples} examples: expected fewer than 2**31')
  _check(config.optim.learning_rate > 0,
         f'optim.learning_rate={config.optim.learning_rate}: expected a positive value')


def _get(config: ConfigDict, dotted: str):
  for part in dotted.split('.'):
    config = config[part]
  return config


def to_json(config: ConfigDict) -> str:
  """The resolved config as indented JSON."""
  return json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True)
