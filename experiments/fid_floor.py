"""The floor of a sample metric: N real training images scored as if they were samples.

  python experiments/fid_floor.py --config=configs/vae_mnist.py \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES \
      --config.eval.features=classifier:runs/classifier_mnist [--num=10000]

Embeds the first --num images of the train split and compares them with the reference
statistics of `data.eval_split` (the same cached file that --mode=eval uses), under the
protocol --mode=eval records. Prints one JSON object: the metrics and the protocol.
"""

import json

from absl import app, flags
from ml_collections import config_flags

from gen_jax import cpu_runtime, experiment
from gen_jax.metrics import evaluator
from gen_jax.metrics.features import load_feature_net

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_NUM = flags.DEFINE_integer('num', 10000, 'Training images scored as samples.')
_SPLIT = flags.DEFINE_string('split', 'train', 'Split the "samples" come from.')
METRICS = ('fid', 'kid', 'precision_recall')


def main(_):
  c = _CONFIG.value
  exp = experiment.build(c)
  net = load_feature_net(c.eval.features, c.eval.inception_weights)
  embed = evaluator.embedder(exp.mesh, net)
  reference = evaluator.reference_statistics(exp, net, embed, c.data.eval_split,
                                             c.eval.reference_num)
  real = evaluator.reference_statistics(exp, net, embed, _SPLIT.value, _NUM.value)
  results = evaluator.compare(real['features'], real['logits'], reference, METRICS, c.seed)
  protocol = {'samples': evaluator.reference_protocol(exp, net, _SPLIT.value, _NUM.value),
              'reference': evaluator.reference_protocol(exp, net, c.data.eval_split,
                                                        c.eval.reference_num)}
  print(json.dumps(results | {'protocol': protocol}, indent=2))


if __name__ == '__main__':
  cpu_runtime.tune()
  app.run(main)
