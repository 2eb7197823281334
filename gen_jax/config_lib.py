"""Defaults every config shares, each family's defaults, and checks of values that types
alone cannot catch. A file in configs/ starts from `family_config(FAMILY)` and states only
what differs (or from `config_beside(__file__, NAME)`, a config it varies)."""

import importlib.util
import json
import os

from ml_collections import ConfigDict, config_dict

from gen_jax import labels, layout
from gen_jax.errors import ConfigError


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
  c.data.num_workers = 0  # grain worker processes per process (0: read in this process)
  c.data.in_memory_gib = 4.0  # a training split whose images fit is decoded once into memory
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
  # Micro-batches per step: each device's batch is cut into this many, run one after another
  # and their gradients averaged (the same update, less activation memory; not the GAN).
  c.train.grad_accum_steps = 1

  c.checkpoint = ConfigDict()
  c.checkpoint.every_steps = 1000
  c.checkpoint.max_to_keep = 3

  c.sample = ConfigDict()
  c.sample.every_steps = 1000  # 0: no grids during training
  c.sample.num = 64  # images written by --mode=sample
  c.sample.checkpoint_step = 0  # --mode=sample: the checkpoint to sample (0: the newest)
  c.sample.output = ''  # --mode=sample: an .npz path ('': in the workdir's samples/)
  c.sample.grid = 64  # images in the grids written during training
  # A class-conditional model's classes: sample i asks for labels[i % len(labels)]; ():
  # every class in turn (gen_jax.labels)
  c.sample.labels = ()

  c.eval = ConfigDict()  # shared by the evaluators and by --mode=eval
  c.eval.batch_size = 100  # global batch of test examples or samples (rounded up to a
  # multiple of the device count: the extra examples are masked, the extra samples dropped)
  c.eval.only = ''  # --mode=eval: the evaluators to run, comma-separated; '': all of them
  c.eval.watch = False  # --mode=eval: evaluate each new checkpoint until train.num_steps
  c.eval.watch_interval = 30  # seconds between looks for a new checkpoint
  c.eval.checkpoint_step = 0  # --mode=eval: the checkpoint to evaluate (0: the newest)
  # The evaluators, NAME -> evaluator(TYPE, ...): each runs every `every_steps` during
  # training (0: only in --mode=eval) and writes its own metrics lines (gen_jax.evaluators).
  c.evals = ConfigDict()

  c.runtime = ConfigDict()
  # The layers' implementation (gen_jax.nn.kernels): 'xla' (plain flax / lax), 'cpu' (the
  # XLA:CPU kernels) or 'auto' ('cpu' on a CPU backend, else 'xla').
  c.runtime.kernels = 'auto'
  return c


# The metrics a sample_quality evaluator computes.
FID_METRICS = ('fid', 'kid', 'precision_recall', 'inception_score')
# Each evaluator type's keys and defaults; `every_steps` 0: only in --mode=eval.
EVALUATORS = {
    # The family's per-example test metrics (its eval_step) over the first `num_examples`
    # examples of data.eval_split: ELBO and IWAE NLL, bits/dim, a classifier's accuracy.
    'likelihood': dict(every_steps=0, num_examples=1000),
    # Mean squared error and PSNR of the family's reconstructions of test examples.
    'reconstruction': dict(every_steps=0, num_examples=1000),
    # `metrics` (some of fid, kid, precision_recall, inception_score) of `num_samples`
    # samples against the first `reference_num` examples of data.eval_split, in the space of
    # `features` (inception_v3_fid, with the weights file `inception_weights`, or
    # classifier:WORKDIR); reference statistics cached in `reference_dir` (None:
    # DATA_DIR/gen_jax_reference).
    'sample_quality': dict(every_steps=0, metrics=('fid',), num_samples=10000, features='',
                           inception_weights=config_dict.placeholder(str),
                           reference_num=10000, reference_dir=config_dict.placeholder(str)),
}


def evaluator(kind: str, **values) -> ConfigDict:
  """Returns the config of one evaluator: {'type': kind} and the type's keys, `values`
  overriding their defaults (a config then sets config.evals.NAME to it)."""
  if kind not in EVALUATORS:
    raise ConfigError(f'evaluator type {kind!r}: expected one of {sorted(EVALUATORS)}')
  unknown = set(values) - set(EVALUATORS[kind])
  if unknown:
    raise ConfigError(f'evaluator {kind!r} has no keys {sorted(unknown)}; its keys: '
                      f'{sorted(EVALUATORS[kind])}')
  return ConfigDict({'type': kind, **EVALUATORS[kind], **values})


def config_beside(config_file: str, name: str) -> ConfigDict:
  """`get_config()` of configs/NAME.py in the folder of `config_file` (a config's __file__):
  a config that varies another starts from it, wherever the command is run from."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f'{name}.py')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def classifier_fid(workdir: str, **values) -> ConfigDict:
  """A sample_quality evaluator of all FID_METRICS in the feature space of the classifier
  trained in `workdir` (configs/classifier_*.py); `values` override its keys."""
  return evaluator('sample_quality', **{'metrics': FID_METRICS,
                                        'features': f'classifier:{workdir}', **values})


def _gan(c: ConfigDict) -> None:
  """The 32 px DCGAN of Radford et al. with the non-saturating loss, Adam 2e-4 / beta1 0.5."""
  # g_channels: widths from the base grid up; d_channels: from the image down.
  # num_classes: 0 unconditional; K > 0 conditional BatchNorm in G and a projection D
  c.model = dict(arch='dcgan', z_dim=100, g_channels=(512, 256, 128), d_channels=(128, 256, 512),
                 d_norm='batch', spectral_norm=False, num_classes=0)
  c.gan = dict(loss='non_saturating', n_critic=1, gp_weight=0.0, r1_gamma=0.0)
  c.optim.learning_rate = 2e-4  # the generator's; optim_d overrides it for D (TTUR)
  c.optim.b1 = 0.5
  c.optim.ema_decay = 0.999
  c.optim_d = dict(learning_rate=2e-4)
  c.train.log_every = 500
  c.checkpoint.every_steps = c.sample.every_steps = 5000


def _ddpm(c: ConfigDict) -> None:
  """Ho et al. (2020)'s CIFAR-10 UNet, schedule, ancestral sampler and optimizer."""
  # num_classes: 0 unconditional; K > 0 conditioned on labels 0..K-1 (K: the null class)
  # arch: 'ddpm' (Ho et al.'s UNet) or 'ddpmpp' (EDM's DDPM++, Song et al. 2021)
  c.model = dict(arch='ddpm', ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
                 attn_resolutions=(16,), dropout=0.1, num_classes=0)
  # formulation: 'ddpm' (timesteps of `schedule`, a network predicting `prediction`) or 'edm'
  # (Karras et al. 2022: a preconditioned denoiser for data of std sigma_data, trained at
  # ln sigma ~ N(p_mean, p_std^2)); label_dropout: the probability of training on the null
  # class (class-conditional only)
  c.diffusion = dict(formulation='ddpm', num_steps=1000, schedule='linear', prediction='eps',
                     min_snr_gamma=0.0, learn_variance=False, vlb_weight=0.001,
                     label_dropout=0.1, sigma_data=0.5, p_mean=-1.2, p_std=1.2)
  # sampler: ddpm or ddim (timesteps, ddpm formulation), or euler, heun or dpmpp_2m (noise
  # levels; a ddpm model through EDM's VP wrapper)
  c.sample.sampler = 'ddpm'
  c.sample.steps = 1000
  c.sample.eta = 0.0
  # spacing: timesteps uniform, trailing or quadratic; noise levels karras (with rho) or
  # logsnr, from sigma_max down to sigma_min (within a ddpm model's schedule)
  c.sample.spacing = 'uniform'
  c.sample.rho = 7.0
  c.sample.sigma_min = 0.002
  c.sample.sigma_max = 80.0
  # heun with churn > 0: EDM's stochastic sampler (S_churn, S_tmin, S_tmax, S_noise)
  c.sample.churn = 0.0
  c.sample.s_tmin = 0.0
  c.sample.s_tmax = float('inf')
  c.sample.s_noise = 1.0
  c.sample.variance = 'large'  # small, large, or learned (with learn_variance)
  c.sample.guidance = 0.0  # classifier-free guidance weight w (class-conditional only)
  # guidance only at the noise levels in (guidance_sigma_min, guidance_sigma_max] of a
  # noise-level sampler (Kynkaanniemi et al. 2024); conditional elsewhere
  c.sample.guidance_sigma_min = 0.0
  c.sample.guidance_sigma_max = float('inf')
  c.optim.learning_rate = 2e-4
  c.optim.warmup_steps = 5000
  c.optim.grad_clip = 1.0
  c.optim.ema_decay = 0.9999
  c.evals.likelihood = evaluator('likelihood')  # bits/dim
  # --mode=edit, on the noise levels of `sample` (steps, spacing): the first `num` images of
  # `source` (a folder of images; '': data.eval_split) regenerated where `mask` (none, box,
  # half, random with `fraction`, or a mask image's path) is 0; strength 1: inpainting from
  # noise, below 1: SDEdit from that share of the steps; RePaint's jump and resample count.
  c.edit = dict(source='', num=16, mask='box', fraction=0.5, strength=1.0, jump=10,
                resample=10, output='')


def _vae(c: ConfigDict) -> None:
  """The conv VAE of configs/vae_mnist.py: Bernoulli likelihood, beta 1, IWAE k=1000 eval."""
  # num_classes: 0 unconditional; K > 0 a conditional VAE on labels 0..K-1
  c.model = dict(channels=(32, 64), hidden=512, latent_dim=32, likelihood='bernoulli',
                 num_classes=0)
  c.loss = dict(beta=1.0)
  c.optim.ema_decay = 0.999
  c.eval.iw_samples = 1000  # importance samples for the likelihood's NLL bound; 0: none
  c.eval.iw_chunk = 100  # of them per pass
  c.evals.likelihood = evaluator('likelihood')  # ELBO and IWAE NLL
  c.evals.reconstruction = evaluator('reconstruction')


def _classifier(c: ConfigDict) -> None:
  c.model = dict(channels=(32, 64), features=128, num_classes=10)
  c.optim.ema_decay = 0.999
  c.sample.every_steps = 0
  c.evals.likelihood = evaluator('likelihood')  # test NLL of the labels and accuracy


FAMILIES = {'gan': _gan, 'ddpm': _ddpm, 'vae': _vae, 'classifier': _classifier}


def family_config(family: str) -> ConfigDict:
  """Returns `base_config()` with `family` set and that family's keys at their defaults."""
  c = base_config()
  c.family = family
  FAMILIES[family](c)
  # The layers' compute dtype, float32 or bfloat16 (gen_jax.nn.kernels): parameters,
  # optimizer state, norm statistics and the networks' outputs stay float32.
  c.model.dtype = 'float32'
  c.model.remat = False  # recompute activations in the backward pass (the UNets' blocks)
  return c


def _keys(config: ConfigDict, prefix: str = '') -> set[str]:
  """The dotted keys of `config`, leaves only, outside `evals` (which configs choose)."""
  keys = set()
  for name, value in config.items():
    if isinstance(value, ConfigDict | dict) and name != 'evals':
      keys |= _keys(value, f'{prefix}{name}.')
    elif name != 'evals':
      keys.add(prefix + name)
  return keys


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def validate(config: ConfigDict) -> None:
  """Raises a ConfigError naming the first key whose value is out of range."""
  _check(bool(config.family), 'family is empty: the config file must set it')
  _check(config.family in FAMILIES,
         f'family={config.family!r}: expected one of {", ".join(FAMILIES)}')
  missing = sorted(_keys(family_config(config.family)) - _keys(config))
  _check(not missing, f'family={config.family!r} needs {missing[0] if missing else ""}, '
         f'which this config lacks ({len(missing)} keys in all): a config file sets its family; '
         'start from a config of that family')
  _check(bool(config.data.name), 'data.name is empty: the config file must set it')
  for key in ('data.image_size', 'data.channels', 'data.batch_size', 'train.num_steps',
              'train.log_every', 'train.grad_accum_steps', 'checkpoint.max_to_keep',
              'eval.batch_size', 'sample.grid', 'sample.num'):
    value = lookup(config, key)
    _check(value > 0, f'{key}={value}: expected a positive integer')
  for key in ('checkpoint.every_steps', 'sample.every_steps', 'data.crop_size',
              'data.num_threads', 'data.num_workers', 'optim.grad_clip', 'optim.warmup_steps',
              'train.profile_steps', 'eval.checkpoint_step'):
    value = lookup(config, key)
    _check(value >= 0, f'{key}={value}: expected 0 or a positive integer')
  _check(config.data.in_memory_gib >= 0,
         f'data.in_memory_gib={config.data.in_memory_gib}: expected 0 (never) or more')
  _check(0.0 <= config.optim.ema_decay < 1.0,
         f'optim.ema_decay={config.optim.ema_decay}: expected a value in [0, 1)')
  for name, spec in config.evals.items():
    _check(spec.get('type') in EVALUATORS, f'evals.{name}.type={spec.get("type")!r}: expected '
           f'one of {sorted(EVALUATORS)} (set it with config_lib.evaluator)')
    _check(spec.every_steps >= 0,
           f'evals.{name}.every_steps={spec.every_steps}: expected 0 or a positive integer')
  examples = config.train.num_steps * config.data.batch_size
  _check(examples < 2 ** 31,  # example ids are int32 stream positions
         f'train.num_steps * data.batch_size = {examples} examples: expected fewer than 2**31')
  _check(config.optim.learning_rate > 0,
         f'optim.learning_rate={config.optim.learning_rate}: expected a positive value')
  k = labels.num_classes(config)
  _check(k >= 0, f'model.num_classes={k}: expected 0 (unconditional) or more')
  for label in config.sample.labels:
    _check(0 <= label < k, f'sample.labels={tuple(config.sample.labels)}: expected classes 0 '
           f'to {k - 1} of model.num_classes={k}' if k else
           f'sample.labels={tuple(config.sample.labels)} needs a class-conditional model '
           '(model.num_classes > 0)')
  folders = {'data.data_dir': config.data.data_dir, 'data.manual_dir': config.data.manual_dir,
             'sample.output': config.sample.output,
             **{f'evals.{name}.reference_dir': spec.get('reference_dir')
                for name, spec in config.evals.items()}}
  for key, value in folders.items():
    _check(not value or not layout.scheme_error(value, key), layout.scheme_error(value or '', key))


def lookup(tree: dict | ConfigDict, dotted: str):
  """tree['a']['b'] for 'a.b', in dicts or ConfigDicts; None where a key is missing."""
  for part in dotted.split('.'):
    tree = tree.get(part) if isinstance(tree, dict | ConfigDict) else None
  return tree


def to_json(config: ConfigDict) -> str:
  """The resolved config as indented JSON."""
  return json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True)


def from_json(text: str) -> ConfigDict:
  """The config that `to_json` wrote (a workdir's config.json), lists as tuples again, over
  its family's defaults: keys added to gen_jax since the run was recorded take them."""
  def tuples(value):
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    return tuple(tuples(v) for v in value) if isinstance(value, list) else value

  def merge(base: ConfigDict, recorded: dict) -> None:
    for key, value in recorded.items():
      if isinstance(value, dict) and key in base and key != 'evals':
        merge(base[key], value)
      else:
        base[key] = ConfigDict(value) if isinstance(value, dict) else value

  recorded = tuples(json.loads(text))
  if recorded.get('family') not in FAMILIES:
    return ConfigDict(recorded)  # validate() names the bad family
  config = family_config(recorded['family'])
  merge(config, recorded)
  return config
