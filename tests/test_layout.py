"""The package's layering: models import only the layer library, flax, jax and numpy; the
CPU kernels are imported by the layer library only; families hold math, not the data
pipeline, the mesh, checkpoints or the training loop; evaluators and metrics see no
experiment; only `layout` spells out the workdir; importing gen_jax changes nothing."""

import ast
import os
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = os.path.join(REPO, 'gen_jax')


def _imports(path: str) -> set[str]:
  """The modules a Python file imports (absolute names; `from a import b` gives a.b too)."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      found.add(node.module)
      found.update(f'{node.module}.{alias.name}' for alias in node.names)
  return found


def _python_files(folder: str) -> list[str]:
  return [os.path.join(root, name) for root, _, names in os.walk(folder)
          for name in names if name.endswith('.py')]


def test_models_import_only_the_layer_library_flax_jax_and_numpy():
  allowed = ('gen_jax.nn', 'gen_jax.models', 'flax', 'jax', 'numpy', 'math', 'itertools',
             'functools', 'collections.abc', 'typing')
  for path in _python_files(os.path.join(PACKAGE, 'models')):
    for module in _imports(path):
      assert module.startswith(allowed), f'{path} imports {module}'
      assert not module.startswith('gen_jax.nn.cpu'), f'{path} imports {module}'


def _attributes_of(path: str, module: str) -> set[str]:
  """The names a file reads from `module` as `module.NAME`."""
  return {node.attr for node in ast.walk(ast.parse(open(path).read()))
          if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
          and node.value.id == module}


def test_families_import_no_pipeline_mesh_checkpoint_or_loop():
  forbidden = ('gen_jax.data', 'gen_jax.checkpoint', 'gen_jax.train', 'gen_jax.experiment',
               'gen_jax.modes', 'gen_jax.metrics', 'gen_jax.layout', 'jax.sharding',
               'jax.experimental')
  collectives = {'pmean', 'psum', 'DATA_AXIS'}  # per-device code may reduce over devices
  for path in _python_files(os.path.join(PACKAGE, 'families')):
    imports = _imports(path)
    for module in imports:
      assert not module.startswith(forbidden), f'{path} imports {module}'
    assert not {m for m in imports if m.startswith('gen_jax.parallel.')} - {
        f'gen_jax.parallel.{name}' for name in collectives}, path
    assert _attributes_of(path, 'parallel') <= collectives, (path, _attributes_of(
        path, 'parallel'))


def test_evaluators_and_metrics_see_no_experiment_or_loop():
  forbidden = ('gen_jax.experiment', 'gen_jax.train', 'gen_jax.modes', 'gen_jax.sweep')
  for folder in ('evaluators', 'metrics'):
    for path in _python_files(os.path.join(PACKAGE, folder)):
      for module in _imports(path):
        assert not module.startswith(forbidden), f'{path} imports {module}'


def test_only_layout_names_the_workdir_files():
  names = ("'checkpoints'", "'metrics.jsonl'", "'config.json'", "'summary.json'",
           'samples_step_', "'.lock'", "'sweep.log'", "'tensorboard'")
  for path in _python_files(PACKAGE):
    if path != os.path.join(PACKAGE, 'layout.py'):
      text = open(path).read()
      assert not [n for n in names if n in text], (path, [n for n in names if n in text])


def test_only_the_layer_library_imports_the_cpu_kernels():
  nn_folder = os.path.join(PACKAGE, 'nn')
  importers = [path for path in _python_files(PACKAGE)
               if any(m.startswith('gen_jax.nn.cpu') for m in _imports(path))]
  assert importers and all(path.startswith(nn_folder + os.sep) for path in importers), importers


def test_importing_gen_jax_changes_no_runtime_setting():
  """(The libraries it imports set a few variables of their own, e.g. tfds's TF logging.)"""
  keys = ('XLA_FLAGS', 'LD_PRELOAD', 'GLIBC_TUNABLES', 'GEN_JAX_MALLOC', 'OMP_WAIT_POLICY')
  code = (f'import os; keys = {keys}; before = [os.environ.get(k) for k in keys]; '
          'import gen_jax, gen_jax.nn, gen_jax.main, gen_jax.train; '
          'print([os.environ.get(k) for k in keys] == before)')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  result = subprocess.run([sys.executable, '-c', code], env={**env, 'PYTHONPATH': REPO},
                          cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.stdout.strip() == 'True', result.stderr[-2000:]
