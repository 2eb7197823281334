"""A workdir's config.json as a config file. `--config=WORKDIR/config.json` (any path ending
in .json) reaches ml_collections as `--config=THIS_FILE:WORKDIR/config.json`, so the run's
recorded config, overrides included, takes further `--config.KEY=VALUE` overrides as usual.
"""

from ml_collections import ConfigDict

from gen_jax import config_lib, layout


def get_config(path: str) -> ConfigDict:
  """Returns the config recorded in the JSON file at `path` (local or gs://)."""
  return config_lib.from_json(layout.path(path).read_text())
