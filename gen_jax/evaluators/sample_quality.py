"""The `sample_quality` evaluator: `num_samples` samples (EMA parameters) embedded by a
feature network and compared with cached reference statistics of data.eval_split, every
number returned with the protocol that produced it. For a class-conditional model it also
gives, with `fid`, the intra-FID (Miyato & Koyama 2018): `intra_fid`, the mean over the
classes asked of the FID between that class's samples and the reference examples of that
class, and each class's as `intra_fid_class_C`; and, in a classifier's feature space,
`class_accuracy`: how often the classifier puts a sample in the class it was asked for (the
"classification accuracy score").

Generation is resumable: each batch's features are saved atomically to a file of their own
in a progress folder, and a restarted evaluation continues after the finished batches. Sample `i`
always uses key fold_in(eval key, i), so an interrupted evaluation gives the same numbers.
"""

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils
from ml_collections import ConfigDict

from gen_jax import layout, parallel
from gen_jax.config_lib import FID_METRICS
from gen_jax.data import augment
from gen_jax.errors import UserError
from gen_jax.evaluators.run import Run, batches
from gen_jax.metrics import sample_quality
from gen_jax.metrics.features import FeatureNet, load_feature_net
from gen_jax.parallel import BATCH, REPLICATED

KID_SUBSETS, KID_SUBSET_SIZE, PR_K = 100, 1000, 3


def embedder(mesh: jax.sharding.Mesh, net: FeatureNet) -> Callable[[jax.Array], tuple]:
  """Returns images [B, H, W, C] in [-1, 1] (sharded) -> host (features, logits)."""
  mapped = parallel.data_parallel(net.apply, mesh, (REPLICATED, BATCH), (BATCH, BATCH))
  params = jax.device_put(net.params, parallel.replicated(mesh))

  def run(images):
    return tuple(np.asarray(multihost_utils.process_allgather(x, tiled=True), np.float32)
                 for x in mapped(params, images))
  return run


def _save_atomically(path: epath.Path, **arrays: np.ndarray) -> None:
  """Writes a local file under a temporary name and renames it; an object is written whole."""
  if jax.process_index() == 0:
    if layout.is_object_store(path):
      with path.open('wb') as f:
        np.savez(f, **arrays)
      return
    tmp = path.with_name(path.name + '.tmp.npz')
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load(path: epath.Path) -> dict[str, np.ndarray]:
  with path.open('rb') as f, np.load(f, allow_pickle=False) as arrays:
    return {k: arrays[k] for k in arrays.files}


def reference_protocol(run: Run, net: FeatureNet, split: str, num: int) -> dict:
  return {'dataset': run.data.name, 'split': split, 'num_examples': num,
          'image_size': run.data.image_size, 'features': net.spec,
          'weights_sha256': net.weights_sha256}


def reference_path(run: Run, reference_dir: str | None, net: FeatureNet, split: str,
                   num: int) -> epath.Path:
  """The cache file of the reference statistics in `reference_dir` (None:
  DATA_DIR/gen_jax_reference); its name records the whole protocol."""
  data = run.data
  directory = layout.path(reference_dir) if reference_dir else layout.path(
      data.data_dir or os.path.expanduser('~/tensorflow_datasets')) / 'gen_jax_reference'
  name = (f'{data.name}-{split}-n{num}-s{data.image_size}-'
          f'{net.spec.split(":")[0]}-{net.weights_sha256[:16]}.npz')
  return directory / name


def reference_statistics(run: Run, reference_dir: str | None, net: FeatureNet, embed,
                         split: str, num: int) -> dict[str, np.ndarray]:
  """Features, logits, labels, mean and covariance of the first `num` examples of `split`
  (not binarized), computed once and then read from the cache in `reference_dir` (a cache
  written without labels is computed again)."""
  path = reference_path(run, reference_dir, net, split, num)
  protocol = reference_protocol(run, net, split, num)
  if path.exists():
    cached = _load(path)
    if json.loads(str(cached['protocol'])) != protocol:
      raise UserError(f'reference statistics {path} were computed under another protocol '
                      f'({cached["protocol"]}); delete the file or set another reference_dir')
    if 'labels' in cached:
      return cached
  features, logits, labels = [], [], []
  for batch in batches(run, split, num):
    images = augment.prepare_images(batch['image'], batch['id'], run.key,
                                    binarize=False, random_flip=False)
    f, lg = embed(images)
    features.append(f)
    logits.append(lg)
    labels.append(np.asarray(multihost_utils.process_allgather(batch['label'], tiled=True)))
  features, logits = np.concatenate(features)[:num], np.concatenate(logits)[:num]
  mu, sigma = sample_quality.gaussian_statistics(features)
  stats = {'features': features, 'logits': logits, 'labels': np.concatenate(labels)[:num],
           'mu': mu, 'sigma': sigma, 'protocol': np.array(json.dumps(protocol))}
  if jax.process_index() == 0:
    layout.make_dirs(path.parent)
  _save_atomically(path, **stats)
  return stats


def _batch_path(progress_dir: epath.Path, start: int, batch: int) -> epath.Path:
  return progress_dir / f'samples_{start:09d}_{batch}.npz'


def sample_features(run: Run, num: int, params: Any, embed, progress_dir: epath.Path | None
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Features and logits of samples 0 .. num - 1 (the last batch's extra samples are
  dropped). Each batch is saved to its own file in `progress_dir` (None: nothing saved), and
  batches found there are reused."""
  batch = run.batch_size
  if progress_dir and jax.process_index() == 0:
    layout.make_dirs(progress_dir)
  ids = jax.sharding.NamedSharding(run.mesh, BATCH)
  features, logits = [], []
  for start in range(0, num, batch):
    path = progress_dir and _batch_path(progress_dir, start, batch)
    if path and path.exists():
      saved = _load(path)
      f, lg = saved['features'], saved['logits']
    else:
      sample_ids = jax.device_put(np.arange(start, start + batch, dtype=np.int32), ids)
      f, lg = embed(run.sample(params, run.key, sample_ids))
      if path:
        _save_atomically(path, features=f, logits=lg)
    features.append(f)
    logits.append(lg)
  return np.concatenate(features)[:num], np.concatenate(logits)[:num]


def compare(features: np.ndarray, logits: np.ndarray, reference: dict[str, np.ndarray],
            metrics: tuple[str, ...], seed: int) -> dict[str, float]:
  """The `metrics` of features [N, D] (and logits [N, K], for the Inception Score) against
  reference statistics."""
  for name, array in (('sample', features), ('reference', reference['features'])):
    if not np.isfinite(array).all():
      raise UserError(f'the feature network gave non-finite {name} features '
                      f'({np.sum(~np.isfinite(array))} values): check its weights')
  results = {}
  if 'fid' in metrics:
    mu, sigma = sample_quality.gaussian_statistics(features)
    results['fid'] = sample_quality.frechet_distance(mu, sigma, reference['mu'],
                                                     reference['sigma'])
  if 'kid' in metrics:
    results['kid'], results['kid_std'] = sample_quality.kernel_inception_distance(
        features, reference['features'], KID_SUBSETS, KID_SUBSET_SIZE, seed=seed)
  if 'precision_recall' in metrics:
    results['precision'], results['recall'] = sample_quality.precision_recall(
        reference['features'], features, k=PR_K)
  if 'inception_score' in metrics:
    probabilities = np.asarray(jax.nn.softmax(logits.astype(np.float64), axis=-1))
    results['inception_score'], results['inception_score_std'] = (
        sample_quality.inception_score(probabilities))
  return results


def make(name: str, spec: ConfigDict, run: Run) -> Callable[[Any, str | None], tuple]:
  """Checks `spec` and loads its feature network; returns evaluate(state, progress_dir)
  -> ({metric: value}, protocol) of the metrics in `spec.metrics`."""
  unknown = set(spec.metrics) - set(FID_METRICS)
  if unknown or not spec.metrics:
    raise UserError(f'evals.{name}.metrics={tuple(spec.metrics)}: expected some of {FID_METRICS}')
  if run.sample is None:
    raise UserError(f'evals.{name} needs samples, and this family does not sample')
  if spec.num_samples <= 0:
    raise UserError(f'evals.{name}.num_samples={spec.num_samples}: expected a positive integer')
  try:
    net = load_feature_net(spec.features, run.mesh, spec.inception_weights)
  except UserError as e:
    raise UserError(f'evals.{name}.{e}') from None
  embed = embedder(run.mesh, net)
  split = run.data.eval_split
  protocol = {'features': net.spec, 'weights_sha256': net.weights_sha256,
              'num_samples': spec.num_samples, 'params': 'ema',
              'sample_key': f'fold_in(eval key of seed {run.seed}, sample id)',
              'reference': reference_protocol(run, net, split, spec.reference_num),
              'feature_image_size': net.image_size,
              'resize': ('none' if net.image_size == run.data.image_size else
                         f'{run.data.image_size} -> {net.image_size}: {net.resize}'),
              'kid': {'kernel': 'cubic polynomial', 'subsets': KID_SUBSETS,
                      'subset_size': KID_SUBSET_SIZE},
              'precision_recall': {'k': PR_K}}
  conditional = run.labels is not None
  if conditional:
    protocol['conditioning'] = run.conditioning | {'label_of_sample_i': 'classes[i % len]'}
    if 'fid' in spec.metrics:
      protocol['intra_fid'] = ('per class asked: its samples against the reference examples '
                               'of that class; intra_fid is the mean over the classes')

  def evaluate(state: Any, progress_dir: str | None = None) -> tuple[dict[str, float], dict]:
    reference = reference_statistics(run, spec.reference_dir, net, embed, split,
                                     spec.reference_num)
    features, logits = sample_features(run, spec.num_samples, state.ema_params, embed,
                                       progress_dir)
    results = compare(features, logits, reference, tuple(spec.metrics), run.seed)
    if conditional:
      asked = run.labels(np.arange(spec.num_samples))
      if 'fid' in spec.metrics:
        try:
          results['intra_fid'], per_class = sample_quality.intra_fid(
              features, asked, reference['features'], reference['labels'])
        except ValueError as e:
          raise UserError(f'evals.{name}: {e}') from None
        results |= {f'intra_fid_class_{c}': value for c, value in per_class.items()}
      if net.spec.startswith('classifier:'):
        results['class_accuracy'] = float(np.mean(np.argmax(logits, axis=-1) == asked))
    return results, protocol | {'feature_dim': int(features.shape[1])}

  return evaluate
