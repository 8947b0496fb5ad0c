"""Helpers shared by the text and image encoders: ``.item`` reading, cache keys, devices, CLI."""

import csv
import io
import logging
import os

import numpy as np

from recbole_bbq.data.artifacts import (
    reuse_cached,
)
from recbole_bbq.data.features import read_cached_feature_file
from recbole_bbq.data.io import read_text
from recbole_bbq.errors import DataError, exit_status

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


def file_identity(path):
    """``[size, mtime_ns]`` of a file: cheap evidence that it did not change."""
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def cached_feature_file(path, cache_key):
    """Return the feature file at ``path`` if its meta ``cache_key`` equals ``cache_key``.

    An absent or unreadable file is not a cache hit (it will be rewritten), so this never raises.
    """
    return reuse_cached(path, cache_key, read_cached_feature_file)


def resolve_device(device):
    """``device`` as given, or ``"cuda"`` when available, else ``"cpu"``."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def run_encoder_cli(command, argv=None):
    """Run an encoder command (``dataset_scripts/encode_*.py``) with the encoders' logging.

    recbole_bbq's INFO messages (cache hits, counts) and every warning are shown as bare
    messages; a user error is printed as ``error: <message>`` (see
    :func:`recbole_bbq.errors.exit_status`).

    Args:
        command (Callable[[list[str] | None], int | None]): Parses ``argv``, encodes and prints
            the feature file path; returns the exit status (None counts as 0).
        argv (list[str], optional): Arguments; the process's command line when None.

    Returns:
        int: The exit status, 2 after a user error.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("recbole_bbq").setLevel(logging.INFO)
    return exit_status(command, argv)
