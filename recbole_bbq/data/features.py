"""Per-modality item feature files: item tokens plus a float32 matrix, in one ``.npz``.

Layout of ``<data_path>/<dataset>.<modality>.npz`` (written by ``dataset_scripts/``):

* ``tokens``: ``str`` array ``[n]``, item tokens exactly as in the atomic files.
* ``features``: ``float32`` array ``[n, d]``.
* ``missing``: ``bool`` array ``[n]``, rows that are placeholders (e.g. an item with no image).
* ``meta``: JSON string (modality, encoder, source, ...).

Because the tokens travel with the matrix, rows can never be misaligned with RecBole's
internal item ids: :func:`align_to_items` looks every item up by token.
"""

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np
import torch

from recbole_bbq.data.artifacts import check_cache_key, meta_array, save_npz
from recbole_bbq.errors import DataError

MISSING_POLICIES = ("error", "zero")


def feature_path(data_path, dataset, modality):
    """Default location of the ``modality`` feature file of ``dataset``."""
    return os.path.join(data_path, f"{dataset}.{modality}.npz")


def configured_feature_path(config, modality):
    """``modality``'s feature file in ``config``: its ``feature_files`` entry, else :func:`feature_path`."""
    return (config["feature_files"] or {}).get(modality) or feature_path(
        config["data_path"], config["dataset"], modality
    )


@dataclass
class FeatureFile:
    """A loaded, validated feature file."""

    path: str
    tokens: np.ndarray
    features: np.ndarray
    missing: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def dim(self):
        return self.features.shape[1]


def non_finite_rows(matrix):
    """``(first row, count)`` of the rows of ``matrix`` with NaN or inf (``(None, 0)`` if none)."""
    bad = ~np.isfinite(matrix).all(axis=1)
    return (int(np.flatnonzero(bad)[0]), int(bad.sum())) if bad.any() else (None, 0)


def _validate(path, tokens, features, missing):
    """Raise :class:`DataError` naming ``path`` and the offending row or token."""
    if features.ndim != 2:
        raise DataError(f"{path}: features must be a 2-D matrix, got shape {features.shape}")
    if len(tokens) != features.shape[0] or len(missing) != features.shape[0]:
        raise DataError(
            f"{path}: {len(tokens)} tokens, {len(missing)} missing flags but {features.shape[0]} feature rows"
        )
    row, count = non_finite_rows(features)
    if count:
        raise DataError(
            f"{path}: row {row} (item '{tokens[row]}') has non-finite values (NaN or inf); "
            f"{count} such rows in total"
        )
    unique, first_index, counts = np.unique(tokens, return_index=True, return_counts=True)
    if (counts > 1).any():
        token = unique[counts > 1][0]
        rows = np.flatnonzero(tokens == token).tolist()
        raise DataError(f"{path}: duplicate item token '{token}' at rows {rows}")


def write_feature_file(path, tokens, features, missing=None, meta=None):
    """Validate and atomically write a feature file.

    Args:
        path (str): Output ``.npz`` path.
        tokens (Sequence[str]): Item tokens, one per row.
        features (array-like): ``[n, d]`` matrix; stored as float32.
        missing (array-like, optional): ``[n]`` bools marking placeholder rows.
        meta (dict, optional): JSON-serialisable description (modality, encoder, ...).

    Raises:
        DataError: On a shape mismatch, a non-finite value or a duplicate token; nothing is
            written then.
    """
    tokens = np.asarray([str(t) for t in tokens], dtype=str)
    features = np.asarray(features, dtype=np.float32)
    missing = np.zeros(len(tokens), dtype=bool) if missing is None else np.asarray(missing, bool)
    _validate(path, tokens, features, missing)
    save_npz(path, tokens=tokens, features=features, missing=missing, meta=meta_array(meta))


def read_feature_file(path):
    """Load and validate a feature file.

    Raises:
        DataError: If the file is missing, truncated, lacks an array or fails validation.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: feature file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("tokens", "features", "missing", "meta")}
    except KeyError as error:
        raise DataError(f"{path}: not a recbole_bbq feature file (missing array {error})") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable or truncated feature file ({error})") from None
    tokens = arrays["tokens"].astype(str)
    features = arrays["features"].astype(np.float32, copy=False)
    missing = arrays["missing"].astype(bool)
    _validate(path, tokens, features, missing)
    return FeatureFile(path, tokens, features, missing, json.loads(str(arrays["meta"])))


def read_cached_feature_file(path, expected_key):
    """Load a cached feature file (behaviour vectors, encoder output) built for ``expected_key``.

    Raises:
        DataError: As :func:`read_feature_file`, or if its meta ``cache_key`` is another key.
    """
    feature_file = read_feature_file(path)
    check_cache_key(path, feature_file.meta, expected_key)
    return feature_file


def align_to_items(feature_file, item_tokens, expected_dim=None, missing_policy="error"):
    """Line a feature file up with RecBole's internal item ids.

    Args:
        feature_file (FeatureFile): A loaded feature file.
        item_tokens (Sequence[str]): ``dataset.field2id_token[item_field]``; index 0 is padding.
        expected_dim (int, optional): Configured dimension; checked when given.
        missing_policy (str): ``"error"`` stops at the first item without a row; ``"zero"`` gives
            such items a zero vector and flags them in the mask.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``features`` ``[n_items, d]`` float32 (row 0 = padding,
        zeros) and ``missing`` ``[n_items]`` bool (True for padding and items without a real row).

    Raises:
        DataError: Naming the file and the first offending item.
    """
    path = feature_file.path
    if missing_policy not in MISSING_POLICIES:
        raise DataError(f"{path}: missing_policy must be one of {MISSING_POLICIES}, got '{missing_policy}'")
    if expected_dim is not None and feature_file.dim != int(expected_dim):
        raise DataError(f"{path}: dimension {feature_file.dim}, but the config expects {expected_dim}")

    row_of = {token: row for row, token in enumerate(feature_file.tokens)}
    item_tokens = [str(t) for t in item_tokens]
    rows = np.array([row_of.get(token, -1) for token in item_tokens[1:]], dtype=np.int64)
    absent = np.flatnonzero(rows < 0)
    if len(absent) == len(rows) and len(rows) > 0:
        raise DataError(
            f"{path}: none of its {len(row_of)} tokens matches the dataset's items "
            f"(first dataset item '{item_tokens[1]}'); is it from another dataset?"
        )
    if len(absent) and missing_policy == "error":
        first = int(absent[0]) + 1
        raise DataError(
            f"{path}: no row for item '{item_tokens[first]}' (internal id {first}); "
            f"{len(absent)} of {len(rows)} items have no row. Set the missing policy to 'zero' "
            f"to use zero vectors for them."
        )
    features = np.zeros((len(item_tokens), feature_file.dim), dtype=np.float32)
    missing = np.ones(len(item_tokens), dtype=bool)
    present = rows >= 0
    features[1:][present] = feature_file.features[rows[present]]
    missing[1:][present] = feature_file.missing[rows[present]]
    return torch.from_numpy(features), torch.from_numpy(missing)


def dataset_yaml_path(data_path, dataset):
    """``<data_path>/<dataset>.yaml``: the dataset's own config, loaded by :class:`Config`."""
    return os.path.join(data_path, f"{dataset}.yaml")


def register_modality(data_path, dataset, modality, dim):
    """Record ``modality`` and its dimension in the dataset's own YAML (atomically).

    Adds ``modality`` to ``modalities`` and sets ``modality_dims[modality] = dim``, keeping every
    other key of ``<data_path>/<dataset>.yaml``.
    """
    import yaml

    from recbole_bbq.data.io import write_text_atomic

    path = dataset_yaml_path(data_path, dataset)
    config = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    modalities = list(config.get("modalities") or [])
    if modality not in modalities:
        modalities.append(modality)
    config["modalities"] = modalities
    config["modality_dims"] = {**(config.get("modality_dims") or {}), modality: int(dim)}
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
