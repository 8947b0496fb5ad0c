"""Defaults of the stages before training, read from ``properties/tokenizer/*.yaml``.

* ``BBQ.yaml``: the ``tokenizer`` section (the BBQ tokenizer).
* ``RQVAE.yaml``: the ``rqvae`` section (the RQ-VAEs of TIGER and MMTIGER).
* ``behaviour.yaml``: the ``behaviour`` section (the behaviour SASRec).

:func:`recbole_bbq.pipeline.stage_config` loads the same files into the stage config. RecBole
merges top-level keys only, so a user's section replaces the whole default mapping there; each
stage therefore completes the user's keys with :func:`with_defaults`.
"""

from functools import lru_cache

import yaml

from recbole_bbq.resources import property_file

# properties/tokenizer/<file> -> the section of defaults it holds, in stage_config's load order.
DEFAULT_FILES = {"BBQ.yaml": "tokenizer", "RQVAE.yaml": "rqvae", "behaviour.yaml": "behaviour"}


@lru_cache(maxsize=None)
def _read_section(file_name):
    with open(property_file("tokenizer", file_name), encoding="utf-8") as f:
        return yaml.safe_load(f)[DEFAULT_FILES[file_name]]


def section_defaults(file_name):
    """A copy of the defaults in ``properties/tokenizer/<file_name>`` (a key of :data:`DEFAULT_FILES`)."""
    return dict(_read_section(file_name))


def with_defaults(file_name, overrides):
    """The defaults of ``file_name`` updated with ``overrides`` (a user's section, or None)."""
    return {**section_defaults(file_name), **(overrides or {})}
