"""Items added after training: the catalogue file and how a dataset takes its items in.

Layout of a catalogue file (``<model file>.<digest>.items.npz``, written by
:func:`recbole_bbq.catalogue.add_items`):

* ``tokens``: ``str`` array ``[n]``, the added items' tokens.
* ``features_<modality>``: ``float32`` array ``[n, d_m]`` per modality of the dataset.
* ``meta``: JSON string (the model file it was made for, counts).

A dataset whose config names the file (``catalogue_file``) appends these tokens to its item
vocabulary after RecBole has built it, so every added item gets the next internal id, and takes
their feature rows from the file. They have no interactions.
"""

import json
import zipfile

import numpy as np
import pandas as pd

from recbole_bbq.data.artifacts import meta_array, save_npz
from recbole_bbq.data.features import FeatureFile
from recbole_bbq.errors import DataError

FEATURE_PREFIX = "features_"


def write_catalogue_file(path, tokens, features, meta=None):
    """Atomically write a catalogue file.

    Args:
        path (str): Output ``.npz`` path.
        tokens (Sequence[str]): Added item tokens.
        features (dict[str, array]): ``[n, d_m]`` rows per modality, in ``tokens`` order.
        meta (dict, optional): JSON-serialisable description.
    """
    arrays = {f"{FEATURE_PREFIX}{m}": np.asarray(x, dtype=np.float32) for m, x in features.items()}
    save_npz(path, tokens=np.asarray([str(t) for t in tokens], dtype=str), meta=meta_array(meta), **arrays)


def read_catalogue_file(path):
    """Load a catalogue file.

    Returns:
        tuple[list[str], dict[str, FeatureFile]]: The added tokens and, per modality, their rows
        as a feature file (no row missing).

    Raises:
        DataError: The file is missing, truncated or not a catalogue file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            tokens = data["tokens"].astype(str)
            features = {
                key[len(FEATURE_PREFIX) :]: data[key].astype(np.float32)
                for key in data.files
                if key.startswith(FEATURE_PREFIX)
            }
            meta = json.loads(str(data["meta"]))
    except FileNotFoundError:
        raise DataError(f"{path}: catalogue file not found (catalogue_file)") from None
    except KeyError as error:
        raise DataError(f"{path}: not a recbole_bbq catalogue file (missing array {error})") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable or truncated catalogue file ({error})") from None
    missing = np.zeros(len(tokens), dtype=bool)
    files = {m: FeatureFile(path, tokens, x, missing, meta) for m, x in features.items()}
    return [str(t) for t in tokens], files


def with_added_rows(feature_file, added):
    """``feature_file`` plus the added items' rows (an added item's row replaces one it had).

    Args:
        feature_file (FeatureFile): A dataset's feature file of one modality.
        added (FeatureFile | None): The catalogue rows of that modality.

    Raises:
        DataError: The added rows have another dimension than the feature file.
    """
    if added is None:
        return feature_file
    if added.dim != feature_file.dim:
        raise DataError(
            f"{added.path}: its rows have dimension {added.dim}, the feature file "
            f"{feature_file.path} has {feature_file.dim}"
        )
    keep = ~np.isin(feature_file.tokens, added.tokens)
    return FeatureFile(
        feature_file.path,
        np.concatenate([feature_file.tokens[keep], added.tokens]),
        np.concatenate([feature_file.features[keep], added.features]),
        np.concatenate([feature_file.missing[keep], added.missing]),
        feature_file.meta,
    )


def append_items(dataset, tokens, source):
    """Append ``tokens`` to ``dataset``'s item vocabulary (ids ``item_num``, ``item_num + 1``, ...).

    Item feature rows (``.item`` file columns), where the dataset has them, are zeros/empty for
    the added items.

    Raises:
        DataError: An item the dataset already has (it has interactions now: retrain instead).
    """
    field = dataset.iid_field
    token_id = dataset.field2token_id[field]
    present = [token for token in tokens if token in token_id]
    if present:
        raise DataError(
            f"{source}: item '{present[0]}' is already in dataset '{dataset.dataset_name}' "
            f"({len(present)} of {len(tokens)} added items are); added items must be new"
        )
    first = len(dataset.field2id_token[field])
    dataset.field2id_token[field] = np.concatenate(
        [dataset.field2id_token[field], np.asarray(tokens, dtype=object)]
    )
    token_id.update({token: first + offset for offset, token in enumerate(tokens)})
    if isinstance(dataset.item_feat, pd.DataFrame):
        dataset.item_feat = pd.concat([dataset.item_feat, _empty_item_rows(dataset, first, len(tokens))])
        dataset.item_feat.reset_index(drop=True, inplace=True)


def _empty_item_rows(dataset, first, count):
    """Item-feature rows for ids ``first ... first + count - 1``: 0 for numbers, [] for lists."""
    rows = {}
    for column in dataset.item_feat.columns:
        if column == dataset.iid_field:
            rows[column] = np.arange(first, first + count)
        elif dataset.item_feat[column].dtype == object:
            rows[column] = [np.zeros(0, dtype=np.asarray(dataset.item_feat[column].iloc[0]).dtype)] * count
        else:
            rows[column] = np.zeros(count, dtype=dataset.item_feat[column].dtype)
    return pd.DataFrame(rows)
