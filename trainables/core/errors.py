"""Errors a user can fix, each raised with a one-line message.

Kept free of torch so the CLI can catch them without importing the training stack.
"""


class ConfigError(ValueError):
    """A configuration value or file that mixtune cannot use; the message is one line."""


class DataError(ValueError):
    """A dataset file or directory mixtune cannot use; the message is one line naming the file and the problem."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""
