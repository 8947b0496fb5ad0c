"""Semantic-ID files: item tokens plus an integer code matrix, in one ``.npz``.

Layout of ``<data_path>/<dataset>.<name>.sid.npz``:

* ``tokens``: ``str`` array ``[n]``, item tokens as in the atomic files.
* ``codes``: ``int64`` array ``[n, L]``, one code per level (the last level may be a dedup code).
* ``meta``: JSON string (source, codebook sizes, config hash, ...).

The tokenizer writes these; published codes (e.g. MQL4GRec's ``.index_*.json``) are converted
into the same format by ``dataset_scripts/``.
"""

import json
import os
import re
import zipfile

import numpy as np
import torch

from recbole_bbq.data.artifacts import (
    meta_array,
    save_npz,
)
from recbole_bbq.errors import DataError

_CODE_PATTERN = re.compile(r"^<?[A-Za-z]*_?(\d+)>?$")


def semantic_id_path(data_path, dataset, name):
    """Default location of the semantic-ID file ``name`` of ``dataset``."""
    return os.path.join(data_path, f"{dataset}.{name}.sid.npz")


def parse_code(text):
    """``"<A_154>"`` or ``"<a_3>"`` or ``"17"`` -> the integer code."""
    match = _CODE_PATTERN.match(str(text).strip())
    if match is None:
        raise ValueError(f"cannot parse semantic-ID code '{text}'")
    return int(match.group(1))


def _validate(path, tokens, codes):
    if codes.ndim != 2 or codes.shape[0] != len(tokens):
        raise DataError(
            f"{path}: codes must be [n_items, levels], got {codes.shape} for {len(tokens)} tokens"
        )
    if codes.size and codes.min() < 0:
        row = int(np.flatnonzero((codes < 0).any(axis=1))[0])
        raise DataError(f"{path}: negative code at row {row} (item '{tokens[row]}')")
    unique, counts = np.unique(tokens, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: duplicate item token '{unique[counts > 1][0]}'")


def write_semantic_id_file(path, tokens, codes, meta=None):
    """Validate and atomically write a semantic-ID file."""
    tokens = np.asarray([str(t) for t in tokens], dtype=str)
    codes = np.asarray(codes, dtype=np.int64)
    _validate(path, tokens, codes)
    save_npz(path, tokens=tokens, codes=codes, meta=meta_array(meta))


def read_semantic_id_file(path):
    """Load and validate a semantic-ID file.

    Returns:
        tuple[np.ndarray, np.ndarray, dict]: ``tokens``, ``codes`` and ``meta``.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: semantic-ID file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            tokens, codes, meta = data["tokens"].astype(str), data["codes"], str(data["meta"])
    except KeyError as error:
        raise DataError(f"{path}: not a recbole_bbq semantic-ID file (missing array {error})") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable or truncated semantic-ID file ({error})") from None
    codes = codes.astype(np.int64)
    _validate(path, tokens, codes)
    return tokens, codes, json.loads(meta)


def read_extra_arrays(path, prefixes=("codes_", "quantized_")):
    """Arrays of a semantic-ID file beyond tokens/codes/meta (the tokenizer's per-signal ones)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files if key.startswith(tuple(prefixes))}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable or truncated semantic-ID file ({error})") from None


def align_codes(path, tokens, codes, item_tokens, require_unique=True):
    """Codes lined up with RecBole's internal item ids (row 0 = padding, all zeros).

    Raises:
        DataError: If an item has no codes, or (``require_unique``) two items share a code tuple.
    """
    row_of = {token: row for row, token in enumerate(tokens)}
    item_tokens = [str(t) for t in item_tokens]
    aligned = np.zeros((len(item_tokens), codes.shape[1]), dtype=np.int64)
    absent = [t for t in item_tokens[1:] if t not in row_of]
    if absent:
        raise DataError(
            f"{path}: no semantic ID for item '{absent[0]}'; {len(absent)} of "
            f"{len(item_tokens) - 1} items are not covered"
        )
    for item_id, token in enumerate(item_tokens[1:], start=1):
        aligned[item_id] = codes[row_of[token]]
    if require_unique and len(item_tokens) > 1:
        _, first, counts = np.unique(aligned[1:], axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            clash = aligned[1:][first[counts > 1][0]]
            raise DataError(f"{path}: several items share the semantic ID {clash.tolist()}")
    return torch.from_numpy(aligned)
