"""Feature-extraction throughput of a feature network: images/s, compile seconds, peak RSS.

  python benchmarks/feature_throughput.py --features=classifier:runs/classifier_mnist \
      [--batch=100] [--image_size=28] [--channels=1] [--steps=20]

Feeds one fixed random batch in [-1, 1] through the jitted network on all devices and back
to the host (`evaluators.sample_quality.embedder`, the path `--mode=eval` takes); prints one
line.
"""

import resource
import time

import jax
import numpy as np
from absl import app, flags

from gen_jax import cpu_runtime, parallel
from gen_jax.evaluators import sample_quality
from gen_jax.metrics import inception
from gen_jax.metrics.features import FeatureNet, load_feature_net

_FEATURES = flags.DEFINE_string('features', None,
                                'Feature network, as a sample_quality evaluator names it.')
_WEIGHTS = flags.DEFINE_string('inception_weights', None,
                               'Weights file for --features=inception_v3_fid; without one, '
                               'random weights (the speed is the same).')
_BATCH = flags.DEFINE_integer('batch', 100, 'Images per call.')
_SIZE = flags.DEFINE_integer('image_size', 28, 'Input image size (resized to the network).')
_CHANNELS = flags.DEFINE_integer('channels', 1, 'Input channels.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed calls, after one compiling call.')


def random_inception() -> FeatureNet:
  module = inception.fid_inception()
  variables = module.init(jax.random.key(0), np.zeros((1, 299, 299, 3), np.float32))
  return FeatureNet('inception_v3_fid (random weights)', '-', inception.IMAGE_SIZE, '',
                    variables, lambda v, x: module.apply(v, inception.resize_for_inception(x)))


def main(_):
  mesh = parallel.make_mesh()
  if _FEATURES.value == 'inception_v3_fid' and not _WEIGHTS.value:
    net = random_inception()  # throughput does not depend on the weights
  else:
    net = load_feature_net(_FEATURES.value, mesh, _WEIGHTS.value)
  embed = sample_quality.embedder(mesh, net)  # what --mode=eval runs, features back on the host
  images = np.random.default_rng(0).uniform(
      -1, 1, (_BATCH.value, _SIZE.value, _SIZE.value, _CHANNELS.value)).astype(np.float32)
  images = jax.device_put(images, jax.sharding.NamedSharding(mesh, parallel.BATCH))
  start = time.perf_counter()
  embed(images)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    embed(images)
  seconds = (time.perf_counter() - start) / _STEPS.value
  print(f'features={net.spec} batch={_BATCH.value} input={_SIZE.value}x{_SIZE.value}'
        f'x{_CHANNELS.value} devices={mesh.size}')
  print(f'images/s {_BATCH.value / seconds:,.0f}  compile {first - seconds:.2f} s  '
        f'peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB')


if __name__ == '__main__':
  cpu_runtime.tune()  # as gen_jax.main does
  app.run(main)
