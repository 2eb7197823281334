"""The floor of a sample metric: N real training images scored as if they were samples.

  python experiments/fid_floor.py --config=configs/vae_mnist.py \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES [--evaluator=fid] [--num=10000]

Embeds the first --num images of the train split and compares them with the reference
statistics of `data.eval_split` (the same cached file that --mode=eval uses), in the feature
space and under the protocol of the config's sample_quality evaluator --evaluator. Prints one
JSON object: the metrics and the protocol.
"""

import json

from absl import app, flags
from ml_collections import config_flags

from gen_jax import cpu_runtime, experiment
from gen_jax.evaluators import sample_quality
from gen_jax.metrics.features import load_feature_net

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_NUM = flags.DEFINE_integer('num', 10000, 'Training images scored as samples.')
_SPLIT = flags.DEFINE_string('split', 'train', 'Split the "samples" come from.')
_EVALUATOR = flags.DEFINE_string('evaluator', 'fid', 'A sample_quality evaluator of the config.')
METRICS = ('fid', 'kid', 'precision_recall')


def main(_):
  c = _CONFIG.value
  spec = c.evals[_EVALUATOR.value]
  exp = experiment.build(c)
  run = experiment.eval_run(exp)
  net = load_feature_net(spec.features, exp.mesh, spec.inception_weights)
  embed = sample_quality.embedder(exp.mesh, net)

  def statistics(split, num):
    return sample_quality.reference_statistics(run, spec.reference_dir, net, embed, split, num)

  reference = statistics(c.data.eval_split, spec.reference_num)
  real = statistics(_SPLIT.value, _NUM.value)
  results = sample_quality.compare(real['features'], real['logits'], reference, METRICS,
                                   c.seed)
  protocol = {'samples': sample_quality.reference_protocol(run, net, _SPLIT.value, _NUM.value),
              'reference': sample_quality.reference_protocol(run, net, c.data.eval_split,
                                                             spec.reference_num)}
  print(json.dumps(results | {'protocol': protocol}, indent=2))


if __name__ == '__main__':
  cpu_runtime.tune()
  app.run(main)
