"""What a config value may be: the small rule builders of :mod:`recbole_bbq.validation`.

A :class:`Rule` pairs a test of the value with the text that says what is allowed, so every
error message states the allowed values in the same words.
"""

import math
from typing import Callable, NamedTuple

from recbole_bbq.data.features import MISSING_POLICIES


class Rule(NamedTuple):
    """What one key accepts: ``accepts(value) -> bool``, and ``allowed`` for the error message."""

    accepts: Callable
    allowed: str


def _rule(accepts, allowed, optional):
    """A :class:`Rule`; ``optional`` also accepts ``~`` (None)."""
    if optional:
        return Rule(lambda value: value is None or accepts(value), f"{allowed} or ~ (none)")
    return Rule(accepts, allowed)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(minimum, optional=False):
    """An integer ``>= minimum`` (booleans and floats such as ``5.0`` are refused)."""
    return _rule(lambda v: is_int(v) and v >= minimum, f"an integer >= {minimum}", optional)


def integers(minimum, optional=False):
    """A non-empty list of integers ``>= minimum``."""
    return _rule(
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(is_int(i) and i >= minimum for i in v),
        f"a non-empty list of integers >= {minimum}",
        optional,
    )


def number(low, high=None, low_open=False, high_open=False, optional=False):
    """A finite number in the interval from ``low`` to ``high`` (``None``: unbounded)."""

    def accepts(value):
        if not _is_number(value) or value < low or (low_open and value == low):
            return False
        return high is None or value < high or (value == high and not high_open)

    if high is None:
        allowed = f"a number {'>' if low_open else '>='} {low}"
    else:
        allowed = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return _rule(accepts, allowed, optional)


def choice(*values, optional=False):
    """One of ``values`` (strings, or None for ``~``)."""
    names = [repr(v) if v is not None else "~" for v in values]
    allowed = " or ".join(names) if len(names) == 2 else "one of " + ", ".join(names)
    return _rule(lambda v: isinstance(v, (str, type(None))) and v in values, allowed, optional)


def boolean():
    """``true`` or ``false`` (YAML) / ``True`` or ``False`` (command line)."""
    return Rule(lambda v: isinstance(v, bool), "true or false")


def string(optional=False):
    """A non-empty string."""
    return _rule(lambda v: isinstance(v, str) and v != "", "a non-empty string", optional)


def strings(optional=False):
    """A list of strings."""
    return _rule(
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v),
        "a list of strings",
        optional,
    )


def string_or_strings(optional=False):
    """A string, or a non-empty list of strings."""
    return _rule(
        lambda v: string().accepts(v) or (strings().accepts(v) and len(v) > 0),
        "a string or a list of strings",
        optional,
    )


def mapping(optional=False):
    """A mapping (YAML ``{key: value}``)."""
    return _rule(lambda v: isinstance(v, dict), "a mapping of keys to values", optional)


def signal_pairs(optional=False):
    """A non-empty list of ``[signal, signal]`` pairs (``sim_pairs``)."""
    return _rule(
        lambda v: (
            isinstance(v, (list, tuple))
            and len(v) > 0
            and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in v
            )
        ),
        "a non-empty list of [signal, signal] pairs",
        optional,
    )


def missing_policy():
    """``missing_feature_policy``: one policy, or one per modality (~ = ``error``)."""
    one = choice(*MISSING_POLICIES)
    return _rule(
        lambda v: one.accepts(v) or (isinstance(v, dict) and all(one.accepts(p) for p in v.values())),
        f"{one.allowed}, or a mapping of modality to one of them",
        optional=True,
    )
