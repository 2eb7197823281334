"""The exception types for bad user input; the CLI prints each as a single line."""


class UserError(ValueError):
  """A bad config value, dataset, batch size, checkpoint or loss: the message says which."""


class ConfigError(UserError):
  """A config value out of range or a config of the wrong family: a usage error (exit 2)."""
