"""The one exception type for bad user input; the CLI prints it as a single line."""


class UserError(ValueError):
  """A bad config value, dataset, batch size, checkpoint or loss: the message says which."""
