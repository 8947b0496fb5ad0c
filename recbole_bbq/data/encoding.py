"""Helpers shared by the text and image encoders: ``.item`` reading, cache keys, devices, CLI."""

import csv
import hashlib
import io
import json
import logging
import os

import numpy as np

from recbole_bbq.data.features import read_feature_file
from recbole_bbq.data.io import read_text
from recbole_bbq.errors import DataError, RecBoleBBQError

ITEM_ID_COLUMN = "item_id"


def item_file_path(data_dir, dataset):
    """``<data_dir>/<dataset>.item``."""
    return os.path.join(data_dir, f"{dataset}.item")


def read_item_file(data_dir, dataset):
    """Read a RecBole ``.item`` file as strings, with the ``:type`` suffixes stripped.

    Args:
        data_dir (str): The dataset folder.
        dataset (str): Dataset name.

    Returns:
        tuple[str, pandas.DataFrame]: The file path and its table (every cell a ``str``).

    Raises:
        DataError: If the file is missing or unreadable (a byte that is not UTF-8 is reported
            with its line and byte offset), has no ``item_id`` column or repeats an item token.
    """
    import pandas as pd

    path = item_file_path(data_dir, dataset)
    if not os.path.isfile(path):
        raise DataError(f"{path}: item file not found")
    text = read_text(path)  # decoded here so that a bad byte is reported with its line and offset
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{path}: unreadable item file ({error})") from None
    frame.columns = [column.split(":", 1)[0] for column in frame.columns]
    if ITEM_ID_COLUMN not in frame.columns:
        raise DataError(f"{path}: no '{ITEM_ID_COLUMN}' column (columns: {list(frame.columns)})")
    duplicated = frame[ITEM_ID_COLUMN].duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataError(f"{path}: duplicate item '{frame[ITEM_ID_COLUMN].iloc[row]}' at data row {row + 1}")
    return path, frame


def sha256_of(value):
    """SHA-256 hex digest of a JSON-serialisable value (lists, dicts, strings, numbers)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()


def file_identity(path):
    """``[size, mtime_ns]`` of a file: cheap evidence that it did not change."""
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def cached_feature_file(path, cache_key):
    """Return the feature file at ``path`` if its meta ``cache_key`` equals ``cache_key``.

    An absent or unreadable file is not a cache hit (it will be rewritten), so this never raises.
    """
    if not os.path.isfile(path):
        return None
    try:
        feature_file = read_feature_file(path)
    except DataError:
        return None
    return feature_file if feature_file.meta.get("cache_key") == cache_key else None


def resolve_device(device):
    """``device`` as given, or ``"cuda"`` when available, else ``"cpu"``."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def run_encoder_cli(main, argv=None):
    """Run a ``dataset_scripts`` entry point: user errors print ``error: ...`` and exit 2.

    Args:
        main (Callable[[list[str] | None], str]): Parses ``argv``, encodes and returns the path.
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` when None.

    Returns:
        int: The exit status.
    """
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("recbole_bbq").setLevel(logging.INFO)
    try:
        print(main(argv))
    except RecBoleBBQError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
