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


# Exit status of a command that stopped on a user error (argparse uses 2 for bad usage too).
USER_ERROR_STATUS = 2


def exit_status(run, *args, **kwargs):
    """Call ``run(*args, **kwargs)`` as a command line does: a user error is one line, not a traceback.

    Args:
        run (Callable[..., int | None]): The command's body; its return value is the exit status
            (None counts as 0).

    Returns:
        int: ``run``'s status, or :data:`USER_ERROR_STATUS` after printing ``error: <message>``
        to stderr when it raised a :class:`RecBoleBBQError`.
    """
    import sys

    try:
        return run(*args, **kwargs) or 0
    except RecBoleBBQError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_STATUS
