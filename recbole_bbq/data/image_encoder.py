"""Item image encoder: open_clip image embeddings of every item's picture, as a feature file.

Weights come from a local checkpoint file, or are random (``pretrained="none"``, seeded) for
tests; nothing is downloaded. An architecture may also be given as ``local-dir:<folder>`` (a
folder with an ``open_clip_config.json``), in which case open_clip takes the weights from that
folder and ignores ``pretrained``.

Items whose picture is absent or unreadable follow a missing policy: ``"error"`` stops with a
:class:`DataError` naming the file and the item; ``"zero"`` gives them a zero row flagged in
the feature file's ``missing`` mask and lists every skipped file at the end.
"""

import logging
import os
import sys

import numpy as np

from recbole_bbq.data import item_features
from recbole_bbq.data.artifacts import sha256_of
from recbole_bbq.data.encoding import file_identity, resolve_device
from recbole_bbq.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = "none"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
NO_IMAGE = "no image file"


def _warn_random_weights(arch, seed):
    """Print a boxed warning to stderr: random weights give meaningless features."""
    lines = [
        "WARNING: random image encoder weights -- for tests only",
        f"open_clip '{arch}' with pretrained='none' (seed {seed}): the features carry no meaning.",
    ]
    width = max(len(line) for line in lines)
    border = "!" * (width + 4)
    body = "\n".join(f"! {line.ljust(width)} !" for line in lines)
    print(f"{border}\n{body}\n{border}", file=sys.stderr)


def _check_encoder(arch, pretrained):
    """Raise :class:`ConfigError` for an unknown built-in architecture or absent weights file."""
    import open_clip

    if ":" not in arch and arch not in open_clip.list_models():
        raise ConfigError(
            f"unknown open_clip architecture '{arch}' "
            "(see open_clip.list_models(), or use local-dir:<folder>)"
        )
    if pretrained != RANDOM_WEIGHTS and not os.path.isfile(pretrained):
        raise ConfigError(f"{pretrained}: image encoder weights must be a local checkpoint file or 'none'")


def _load_image_model(arch, pretrained, seed, device):
    """An open_clip model in eval mode on ``device`` and its evaluation transform.

    Raises:
        ConfigError: If ``pretrained`` is neither ``"none"`` nor an existing file, or open_clip
            cannot build ``arch``.
    """
    import open_clip
    import torch

    _check_encoder(arch, pretrained)
    if pretrained == RANDOM_WEIGHTS:
        _warn_random_weights(arch, seed)
        torch.manual_seed(seed)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=None if pretrained == RANDOM_WEIGHTS else pretrained
        )
    except (RuntimeError, ValueError, FileNotFoundError) as error:
        raise ConfigError(
            f"cannot build open_clip model '{arch}' (pretrained={pretrained}): {error}"
        ) from None
    return model.to(device).eval(), preprocess


def _load_image(path):
    """``(RGB image, None)``, or ``(None, reason)`` when ``path`` is empty, absent or corrupt."""
    from PIL import Image

    if not path:
        return None, NO_IMAGE
    try:
        with Image.open(path) as image:
            return image.convert("RGB"), None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return None, f"unreadable image ({type(error).__name__}: {error})"


def _load_batch(paths, items, rows, preprocess, missing_policy):
    """Load and preprocess the images of ``rows``.

    Returns:
        tuple[list[int], list[torch.Tensor], list[tuple[int, str]]]: Rows that loaded, their
        tensors, and ``(row, reason)`` for those that did not.

    Raises:
        DataError: Under the ``"error"`` policy, for the first image that does not load.
    """
    loaded, tensors, failed = [], [], []
    for row in rows:
        image, reason = _load_image(paths[row])
        if image is None:
            if missing_policy == "error":
                raise DataError(f"{paths[row] or '(no file)'}: item '{items[row]}': {reason}")
            failed.append((row, reason))
        else:
            loaded.append(row)
            tensors.append(preprocess(image))
    return loaded, tensors, failed


def _embed(model, tensors, device):
    """L2-normalised image embeddings of preprocessed image tensors, as ``float32`` numpy rows."""
    import torch

    return model.encode_image(torch.stack(tensors).to(device), normalize=True).float().cpu().numpy()


def _require_some_image(features, skipped, count):
    """Raise :class:`DataError` when none of the ``count`` images loaded (``features`` is None)."""
    if features is None:
        first = f" (first: {skipped[0][0] or '(no file)'}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"none of the {count} images could be loaded{first}")


def _store_rows(features, rows, batch, n_rows):
    """``features`` with ``batch`` in ``rows``; the first batch allocates ``[n_rows, d]`` zeros."""
    if features is None:
        features = np.zeros((n_rows, batch.shape[1]), dtype=np.float32)
    features[rows] = batch
    return features


def _report_skipped(skipped):
    """Log every skipped image file, once, after encoding."""
    if skipped:
        listing = "\n".join(f"  {path or '(no file)'}: {reason}" for path, reason in skipped)
        logger.warning(f"{len(skipped)} image(s) skipped (zero vectors, flagged missing):\n{listing}")


def encode_images(
    paths,
    arch,
    pretrained,
    batch_size=32,
    device=None,
    missing_policy="zero",
    seed=2020,
    show_progress=True,
    items=None,
):
    """L2-normalised open_clip image embeddings of image files.

    Args:
        paths (Sequence[str]): Image files; ``""`` for an item without one.
        arch (str): open_clip architecture (``open_clip.list_models()`` or ``local-dir:<folder>``).
        pretrained (str): Checkpoint file, or ``"none"`` for random weights seeded by ``seed``
            (prints a warning; for tests only).
        batch_size (int): Images per forward pass.
        device (str, optional): Default cuda when available, else cpu.
        missing_policy (str): ``"zero"`` or ``"error"`` for an absent or unreadable file.
        seed (int): Seed of the random weights.
        show_progress (bool): Show a tqdm progress bar.
        items (Sequence[str], optional): Item names for error messages; default row numbers.

    Returns:
        tuple[numpy.ndarray, numpy.ndarray, list[tuple[str, str]]]: ``float32`` features
        ``[n, d]`` (zero rows for skipped images), the ``bool`` missing mask ``[n]`` and the
        skipped ``(path, reason)`` pairs.

    Raises:
        DataError: Under the ``"error"`` policy for an image that does not load, and under any
            policy when no image loads at all.
        ConfigError: For an unknown policy, architecture or checkpoint.
    """
    import torch
    from tqdm import tqdm

    item_features.check_missing_policy(missing_policy)
    paths = [str(path) for path in paths]
    items = [str(item) for item in items] if items is not None else [str(row) for row in range(len(paths))]
    device = resolve_device(device)
    model, preprocess = _load_image_model(arch, pretrained, seed, device)
    features, missing, skipped = None, np.zeros(len(paths), dtype=bool), []
    with (
        torch.inference_mode(),
        tqdm(total=len(paths), desc="images", unit="img", disable=not show_progress) as bar,
    ):
        for start in range(0, len(paths), batch_size):
            rows = range(start, min(start + batch_size, len(paths)))
            loaded, tensors, failed = _load_batch(paths, items, rows, preprocess, missing_policy)
            missing[[row for row, _ in failed]] = True
            skipped += [(paths[row], reason) for row, reason in failed]
            if loaded:
                features = _store_rows(features, loaded, _embed(model, tensors, device), len(paths))
            bar.update(len(rows))
    _require_some_image(features, skipped, len(paths))
    _report_skipped(skipped)
    return features, missing, skipped


def find_image_file(token, value, image_dir, data_dir):
    """The image file of one item, or ``""`` if there is none.

    Tries the ``image`` column value as a path (absolute, or relative to ``image_dir`` then
    ``data_dir``; a URL never matches), then ``<image_dir>/<token>.<jpg|jpeg|png>``.
    """
    folders = [folder for folder in (image_dir, data_dir) if folder]
    candidates = []
    if value:
        candidates += [value] if os.path.isabs(value) else [os.path.join(folder, value) for folder in folders]
    if image_dir:
        candidates += [os.path.join(image_dir, f"{token}.{ext}") for ext in IMAGE_EXTENSIONS]
    return next((os.path.abspath(path) for path in candidates if os.path.isfile(path)), "")


def _image_cache_key(arch, pretrained, seed, tokens, paths, missing_policy):
    """Hash of the encoder (file size and mtime of a checkpoint), every item's image file and the
    missing policy: a file written under ``"zero"`` (zero rows for absent images) is never
    reused by an ``"error"`` run, which must stop on the first absent image instead."""
    weights = (
        [os.path.abspath(pretrained), *file_identity(pretrained)]
        if os.path.isfile(pretrained)
        else pretrained
    )
    images = [[token, path, *(file_identity(path) if path else [])] for token, path in zip(tokens, paths)]
    return sha256_of([arch, weights, int(seed), images, {"missing_policy": missing_policy}])


def encode_dataset_images(
    data_dir, dataset, image_dir, arch, pretrained, seed=2020, missing_policy="zero", **kwargs
):
    """Encode the image of every item of ``<data_dir>/<dataset>.item`` into a feature file.

    An item's image is found by :func:`find_image_file` (``image`` column, else the item
    token's file in ``image_dir``). Writes ``feature_path(data_dir, dataset, "image")`` and
    records the ``image`` modality and dimension in ``<data_dir>/<dataset>.yaml``; nothing is
    written when encoding fails.

    The output is reused, without loading the model, when its ``cache_key`` (architecture,
    weights file, seed, missing policy and every item's image path, size and mtime) matches.

    Args:
        data_dir (str): The dataset folder.
        dataset (str): Dataset name.
        image_dir (str): Folder of ``<item_token>.<ext>`` images (may be None).
        arch (str): open_clip architecture.
        pretrained (str): Checkpoint file or ``"none"``.
        seed (int): Seed of random weights.
        missing_policy (str): ``"zero"`` or ``"error"`` for an absent or unreadable image.
        **kwargs: ``batch_size``, ``device``, ``show_progress`` of :func:`encode_images`.

    Returns:
        str: The feature file path.
    """
    item_path, frame, tokens = item_features.read_item_table(data_dir, dataset)
    values = frame["image"].tolist() if "image" in frame.columns else [""] * len(tokens)
    paths = [find_image_file(token, value, image_dir, data_dir) for token, value in zip(tokens, values)]
    item_features.check_missing_policy(missing_policy)
    cache_key = _image_cache_key(arch, pretrained, seed, tokens, paths, missing_policy)
    out = item_features.reuse_cached_features(data_dir, dataset, "image", cache_key)
    if out is not None:
        logger.info(f"{out}: cached (same encoder, missing policy and image files)")
        return out
    try:
        features, missing, skipped = encode_images(
            paths, arch, pretrained, seed=seed, items=tokens, missing_policy=missing_policy, **kwargs
        )
    except DataError as error:
        raise DataError(f"{item_path} (image folder {image_dir}): {error}") from None
    meta = {
        "arch": arch,
        "pretrained": pretrained,
        "seed": int(seed),
        "missing_policy": missing_policy,
        "cache_key": cache_key,
        "skipped": len(skipped),
    }
    out = item_features.save_features(data_dir, dataset, "image", tokens, features, missing, meta)
    logger.info(f"{out}: {len(tokens)} items, dim {features.shape[1]}, {len(skipped)} without an image")
    return out
