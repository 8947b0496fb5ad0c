"""Exceptions that the CLI reports as a one-line error instead of a traceback."""


class RecBoleBBQError(Exception):
    """Base class of every user-facing error raised by recbole_bbq."""


class UnknownModelError(RecBoleBBQError, ValueError):
    """The requested model exists neither in recbole_bbq nor in RecBole."""


class ConfigError(RecBoleBBQError, ValueError):
    """A configuration key has a missing or invalid value."""


class DataError(RecBoleBBQError, ValueError):
    """An input data file is missing, malformed or inconsistent."""


class CheckpointError(RecBoleBBQError):
    """A checkpoint file is missing, unreadable, refused by safe loading or cannot be saved safely."""
