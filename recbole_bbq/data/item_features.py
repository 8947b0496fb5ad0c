"""Steps both item encoders take around their model: item table, missing policy, cache, output.

:func:`recbole_bbq.data.text_encoder.encode_dataset_text` and
:func:`recbole_bbq.data.image_encoder.encode_dataset_images` read ``<dataset>.item``, check the
missing policy, reuse ``<dataset>.<modality>.npz`` when its cache key matches and otherwise
write it; either way the modality and its dimension are recorded in ``<dataset>.yaml``.
"""

from recbole_bbq.data.encoding import ITEM_ID_COLUMN, cached_feature_file, read_item_file
from recbole_bbq.data.features import MISSING_POLICIES, feature_path, register_modality, write_feature_file
from recbole_bbq.errors import ConfigError


def read_item_table(data_dir, dataset):
    """``<data_dir>/<dataset>.item`` with its item tokens.

    Returns:
        tuple[str, pandas.DataFrame, list[str]]: The file path, its table (see
        :func:`recbole_bbq.data.encoding.read_item_file`) and the item tokens in row order.
    """
    item_path, frame = read_item_file(data_dir, dataset)
    return item_path, frame, frame[ITEM_ID_COLUMN].tolist()


def check_missing_policy(missing_policy):
    """Raise :class:`ConfigError` unless ``missing_policy`` is one of ``MISSING_POLICIES``."""
    if missing_policy not in MISSING_POLICIES:
        raise ConfigError(f"missing policy must be one of {MISSING_POLICIES}, got '{missing_policy}'")


def reuse_cached_features(data_dir, dataset, modality, cache_key):
    """The ``modality`` feature file when it was written with ``cache_key``, registered again.

    Returns:
        str | None: Its path, or None when it is absent, unreadable or has another cache key.
    """
    out = feature_path(data_dir, dataset, modality)
    cached = cached_feature_file(out, cache_key)
    if cached is None:
        return None
    register_modality(data_dir, dataset, modality, cached.dim)
    return out


def save_features(data_dir, dataset, modality, tokens, features, missing, meta):
    """Write the ``modality`` feature file and record the modality and its dimension.

    The file's meta is ``meta`` plus ``modality`` and ``dim``.

    Args:
        data_dir (str): The dataset folder.
        dataset (str): Dataset name.
        modality (str): ``"text"``, ``"image"``, ...
        tokens (Sequence[str]): Item tokens, one per row.
        features (numpy.ndarray): ``float32`` ``[n, d]``.
        missing (numpy.ndarray): ``bool`` ``[n]``, rows that are placeholders.
        meta (dict): What the encoder records (encoder, cache key, ...).

    Returns:
        str: The feature file path.
    """
    dim = features.shape[1]
    out = feature_path(data_dir, dataset, modality)
    write_feature_file(
        out, tokens, features, missing=missing, meta={"modality": modality, "dim": dim, **meta}
    )
    register_modality(data_dir, dataset, modality, dim)
    return out
