"""Cached artifacts: content hashes, keyed paths, atomic writes and the cache-key check.

Every stage that caches a file (feature files of the encoders, behaviour vectors, the BBQ
tokenizer artifact, TIGER/MMTIGER semantic IDs) goes through these helpers:

* :func:`sha256_of` (JSON values) and :func:`sha256_of_bytes` (raw content) hash the inputs
  into a cache key;
* :func:`keyed_path` turns the key into ``<data_path>/<dataset>.<kind>-<key[:16]><ending>``;
* :func:`atomic_write` / :func:`save_npz` write through a temporary file and a rename, after
  removing what a killed writer left behind;
* :func:`reuse_cached` loads a cached file only when its meta ``cache_key`` is the expected one
  (:func:`check_cache_key` raises the stale-key error that names the file and both keys);
* inside :func:`reuse_only`, a stage that would build a missing artifact raises
  :class:`ArtifactNotReady` instead (:func:`check_building_allowed`): the nodes of a multi-node
  run other than the first wait for the first node's artifacts rather than fitting their own.
"""

import contextlib
import contextvars
import hashlib
import json
import os

import numpy as np

from recbole_bbq.data.io import atomic_path, remove_stale_temp_files
from recbole_bbq.errors import DataError

# Characters of the cache key that go into an artifact's file name.
KEY_CHARS = 16
_REUSE_ONLY = contextvars.ContextVar("reuse_only", default=False)


class ArtifactNotReady(Exception):
    """A stage needs an artifact that is not there yet, inside :func:`reuse_only`.

    Attributes:
        path (str): The artifact the stage would have built.
    """

    def __init__(self, path):
        super().__init__(f"{path} is not there yet")
        self.path = str(path)


@contextlib.contextmanager
def reuse_only():
    """Within this block, stages reuse their cached artifacts and build none."""
    token = _REUSE_ONLY.set(True)
    try:
        yield
    finally:
        _REUSE_ONLY.reset(token)


def check_building_allowed(path):
    """Called by a stage just before it builds ``path``; raises :class:`ArtifactNotReady`
    inside :func:`reuse_only`."""
    if _REUSE_ONLY.get():
        raise ArtifactNotReady(path)


def sha256_of(value):
    """SHA-256 hex digest of a JSON-serialisable value (lists, dicts, strings, numbers)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()


def _as_bytes(part):
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode("utf-8")
    return np.ascontiguousarray(part).tobytes()


def sha256_of_bytes(*parts):
    """SHA-256 hex digest of ``parts`` fed one after the other.

    Args:
        *parts (bytes | str | np.ndarray): Raw bytes, text (as UTF-8) or arrays (their C-order
            bytes, so the digest sees the values, not the object).

    Returns:
        str: The hex digest.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(_as_bytes(part))
    return digest.hexdigest()


def sha256_with_files(*parts, paths=()):
    """:func:`sha256_of_bytes` of ``parts`` followed by the bytes of every file in ``paths``.

    The digest of a setting that config files decide: an edited file changes it.
    """
    contents = []
    for path in paths or ():
        with open(path, "rb") as f:
            contents.append(f.read())
    return sha256_of_bytes(*parts, *contents)


def keyed_path(config, kind, key, ending):
    """``<data_path>/<dataset>.<kind>-<key[:16]><ending>``: where the ``kind`` artifact of ``key`` lives.

    Args:
        config (Config | dict): Gives ``data_path`` and ``dataset``.
        kind (str): Artifact kind, e.g. ``behaviour``, ``bbq``, ``tiger``.
        key (str): The full cache key (hex digest).
        ending (str): File ending, e.g. ``.npz`` or ``.sid.npz``.
    """
    return os.path.join(config["data_path"], f"{config['dataset']}.{kind}-{key[:KEY_CHARS]}{ending}")


def meta_array(meta):
    """The ``meta`` array of an ``.npz`` file: ``meta`` (or ``{}``) as sorted-key JSON."""
    return np.asarray(json.dumps(meta or {}, sort_keys=True))


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path that becomes ``path`` on success (see :func:`~recbole_bbq.data.io.atomic_path`).

    Orphaned temporary files of ``path`` (a writer killed mid-write) are removed first.
    """
    remove_stale_temp_files(path)
    with atomic_path(path) as tmp:
        yield tmp


def save_npz(path, **arrays):
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically (:func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def check_cache_key(path, meta, expected_key):
    """Raise :class:`DataError` when an artifact was built for another config or dataset.

    Args:
        path (str): The artifact, named in the error.
        meta (dict): Its meta; ``meta["cache_key"]`` is the key it was built for.
        expected_key (str | None): The key this config and data need; None skips the check.
    """
    if expected_key is not None and meta.get("cache_key") != expected_key:
        raise DataError(
            f"{path}: stale artifact (built for key {str(meta.get('cache_key'))[:KEY_CHARS]}, this config "
            f"and data need {expected_key[:KEY_CHARS]}); delete it or rerun its stage"
        )


def reuse_cached(path, expected_key, load, on_unusable=None):
    """The cached artifact at ``path`` if it is there, readable and built for ``expected_key``.

    A missing, unreadable or stale file is not a cache hit (the caller rebuilds it), so this
    never raises :class:`DataError`.

    Args:
        path (str): The artifact.
        expected_key (str): The key it must have been built for.
        load (Callable[[str, str], object]): Loads ``path`` and checks its key
            (:func:`check_cache_key`); raises :class:`DataError` when it cannot be used.
        on_unusable (Callable[[DataError], None], optional): Told why an existing file is not
            reused (e.g. to log it).

    Returns:
        object | None: What ``load`` returned, or None.
    """
    if not os.path.isfile(path):
        return None
    try:
        return load(path, expected_key)
    except DataError as error:
        if on_unusable is not None:
            on_unusable(error)
        return None
