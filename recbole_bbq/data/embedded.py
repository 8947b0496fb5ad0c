"""Datasets that work with no download because their atomic files ship inside ``recbole``."""

import os
import shutil

import recbole

from recbole_bbq.data.artifacts import atomic_write

EMBEDDED_DATASETS = ("ml-100k",)


def embedded_source_dir(dataset):
    """Directory of RecBole's bundled copy of ``dataset``."""
    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", dataset)


def ensure_embedded_dataset(data_path, dataset):
    """Copy RecBole's bundled atomic files of ``dataset`` into ``data_path`` when missing.

    Each file is copied to a temporary name, then renamed
    (:func:`~recbole_bbq.data.artifacts.atomic_write`), so an interrupted copy never leaves a
    half-written atomic file. Files already present (for example a user's own edit) are kept.

    Args:
        data_path (str): The dataset directory, ``<data_path>/<dataset>`` in RecBole terms.
        dataset (str): Dataset name; anything not in :data:`EMBEDDED_DATASETS` is ignored.

    Returns:
        list[str]: The files that were copied.
    """
    if dataset not in EMBEDDED_DATASETS:
        return []
    source = embedded_source_dir(dataset)
    os.makedirs(data_path, exist_ok=True)
    copied = []
    for name in sorted(os.listdir(source)):
        target = os.path.join(data_path, name)
        if os.path.exists(target) or not os.path.isfile(os.path.join(source, name)):
            continue
        with atomic_write(target) as tmp:
            shutil.copyfile(os.path.join(source, name), tmp)
        copied.append(target)
    return copied
