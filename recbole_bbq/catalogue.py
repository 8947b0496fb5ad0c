"""Add items to a trained model without retraining it.

New items get their semantic IDs from the saved tokenizer (content only: they have no behaviour
vector), a dedup code where their ID collides, and rows in every item table of the model:

* tables derived from the data (semantic IDs, the trie, quantized content, text vectors,
  similarity vectors) are rebuilt from the extended data;
* learned per-item tables (BBQRec's z_ID, BBQSASRec's ID embeddings) get zero rows, so an added
  item's dense representation comes from its quantized content alone.

Models that know items only by a learned ID embedding (SASRec, GRU4Rec, ...) cannot take new
items. See the README, "Serving".
"""

import os
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from recbole_bbq.checkpoint import load_checkpoint
from recbole_bbq.data.artifacts import atomic_write, meta_array, save_npz, sha256_of
from recbole_bbq.data.catalogue import read_catalogue_file, write_catalogue_file
from recbole_bbq.data.features import FeatureFile, read_feature_file
from recbole_bbq.data.semantic_ids import read_extra_arrays, read_semantic_id_file
from recbole_bbq.errors import ConfigError, DataError
from recbole_bbq.model.traits import model_traits

ID_ROWS = ("zero", "mean", "nearest")
# New items compared with every trained item at once, in groups of this many (bounds memory).
NEAREST_CHUNK = 64


def add_items(model_file, features, output_file=None, trust=False, id_rows="zero"):
    """Add items to a saved model; write the updated model file and its artifacts.

    Args:
        model_file (str): A checkpoint written by this package's trainer.
        features (dict[str, str | FeatureFile]): Per modality, a feature file (``.npz``, as
            written by ``dataset_scripts/encode_text.py``) of the new items; every modality of
            the model's dataset and tokenizer is needed, with the same items in each.
        output_file (str, optional): Where the updated model goes (default: ``model_file``,
            replaced atomically). Beside it go ``<name>.<digest>.items.npz`` (the added items'
            features) and, for semantic-ID models, ``<name>.<digest>.sid.npz``.
        trust (bool): Allow fully unpickled checkpoints (see :func:`load_checkpoint`).
        id_rows (str): New items' learned per-item rows (BBQRec's z_ID): ``zero`` (default:
            content alone), ``mean`` (of the trained rows) or ``nearest`` (the row of the trained
            item with the closest feature vectors, :func:`nearest_trained_items`).

    Returns:
        str: The updated model file.

    Raises:
        ConfigError: The model cannot score items it was not trained on.
        DataError: A bad feature file or row, a missing modality, an item the model already has,
            or a tokenizer that cannot encode new items (published codes). Nothing is written then.
    """
    from recbole_bbq.quick_start import build_model, load_data_and_model, saved_config

    if id_rows not in ID_ROWS:
        raise ConfigError(f"id_rows must be one of {ID_ROWS}, got '{id_rows}'")
    output_file = str(output_file or model_file)
    checkpoint = load_checkpoint(model_file, "cpu", trust=trust)
    config, model, dataset, *_ = load_data_and_model(model_file, trust=trust)
    traits = _traits_that_take_new_items(config["model"])
    tokenizer = _saved_tokenizer(config) if traits.semantic_ids else None
    needed = set(dataset.modalities) | set(tokenizer.modalities if tokenizer else ())
    tokens, rows = new_item_rows(features, needed, dataset)
    root = os.path.splitext(output_file)[0] + "." + sha256_of([model_file, tokens, id_rows])[:12]
    written = []  # removed again if anything fails, so a failed call leaves no files behind
    try:
        overrides = {"catalogue_file": _write_catalogue(root, config, tokens, rows, written)}
        if tokenizer is not None:
            encoded = tokenizer.encode({m: rows[m] for m in tokenizer.modalities})
            path = _write_semantic_ids(root, config, tokens, encoded, written)
            overrides["semantic_ids_file"] = path
            if traits.generative:
                codes = read_semantic_id_file(path)[1]
                overrides["semantic_id_vocab_sizes"] = code_vocab_sizes(model.vocab_sizes, codes)
        new_model, new_dataset = build_model(saved_config(checkpoint, overrides))[:2]
        nearest = nearest_trained_items(new_dataset, model.n_items) if id_rows == "nearest" else None
        new_model.load_state_dict(grown_state_dict(model, new_model, id_rows, nearest))
        _save_extended(output_file, checkpoint, overrides, new_model)
    except BaseException:
        for path in written:
            if os.path.exists(path):
                os.remove(path)
        raise
    return output_file


def _traits_that_take_new_items(model_name):
    """The model's traits; a ConfigError for a model that knows items only by learned IDs."""
    traits = model_traits(model_name)
    if not (traits.semantic_ids or traits.item_features):
        raise ConfigError(
            f"{model_name} knows items only by learned ID embeddings: it cannot score items it "
            f"was not trained on (models with semantic IDs or item features can)"
        )
    return traits


def _save_extended(output_file, checkpoint, overrides, model):
    """Write ``checkpoint`` with the extended config and weights to ``output_file``, atomically."""
    from recbole_bbq.quick_start import checkpoint_settings

    config = {**checkpoint_settings(checkpoint), **overrides}
    updated = {**checkpoint, "config": config, "state_dict": model.state_dict()}
    updated["optimizer"] = None  # its per-item moments no longer fit; serving needs none
    with atomic_write(output_file) as tmp:
        torch.save(updated, tmp)


def _saved_tokenizer(config):
    """The fitted tokenizer beside the artifact the model's semantic IDs were first made in."""
    from recbole_bbq.tokenizer.saved import load_tokenizer

    path = config["semantic_ids_file"]
    return load_tokenizer(read_semantic_id_file(path)[2].get("base_artifact", path))


def as_feature_file(modality, source):
    """A :class:`FeatureFile` from a path (read and checked) or one given as it is."""
    if isinstance(source, FeatureFile):
        return source
    if isinstance(source, (str, os.PathLike)):
        return read_feature_file(str(source))
    raise DataError(f"features['{modality}']: expected a feature file path, got {type(source).__name__}")


def new_item_rows(features, needed, dataset):
    """The new items' tokens and their rows per needed modality, checked against the model.

    Returns:
        tuple[list[str], dict[str, np.ndarray]]: Tokens (in the first modality's order) and
        ``[n, d_m]`` rows per modality in that order.

    Raises:
        DataError: A modality missing, files listing different items, a dimension that differs
            from the model's, or an item the model already has.
    """
    missing = sorted(needed - set(features))
    if missing:
        raise DataError(f"no features for modality '{missing[0]}'; the model needs {sorted(needed)}")
    files = {m: as_feature_file(m, features[m]) for m in sorted(needed)}
    first = next(iter(files.values()))
    tokens = [str(t) for t in first.tokens]
    if not tokens:
        raise DataError(f"{first.path}: lists no items to add")
    known = dataset.field2token_id[dataset.iid_field]
    present = [t for t in tokens if t in known]
    if present:
        raise DataError(
            f"{first.path}: item '{present[0]}' is already in the model's catalogue "
            f"({len(present)} of {len(tokens)} items are); only new items can be added"
        )
    rows = {}
    for modality, feature_file in files.items():
        if set(feature_file.tokens) != set(tokens):
            extra = sorted(set(feature_file.tokens) ^ set(tokens))[0]
            raise DataError(
                f"{feature_file.path} and {first.path} list different items (e.g. '{extra}'); "
                f"give every modality the same new items"
            )
        expected = _model_dim(dataset, modality)
        if expected is not None and feature_file.dim != expected:
            raise DataError(
                f"{feature_file.path}: '{modality}' vectors have dimension {feature_file.dim}, "
                f"the model's have {expected}"
            )
        row_of = {str(t): row for row, t in enumerate(feature_file.tokens)}
        rows[modality] = feature_file.features[[row_of[t] for t in tokens]]
    return tokens, rows


def _model_dim(dataset, modality):
    features = dataset.item_features.get(modality)
    return None if features is None else int(features.shape[1])


def _write_catalogue(root, config, tokens, rows, written):
    """All items added so far (earlier additions first) with their rows, as a catalogue file."""
    all_tokens, all_rows = list(tokens), dict(rows)
    if config["catalogue_file"]:
        before, files = read_catalogue_file(config["catalogue_file"])
        all_tokens = before + all_tokens
        all_rows = {m: np.concatenate([files[m].features, x]) for m, x in rows.items()}
    path = root + ".items.npz"
    written.append(path)
    write_catalogue_file(path, all_tokens, all_rows, {"added_items": len(all_tokens)})
    return path


def assign_dedup_codes(existing, new_codes):
    """Dedup codes of new items: the lowest code no item with the same prefix uses.

    Args:
        existing (np.ndarray): ``[n, L + 1]`` semantic IDs of the model's items (dedup last).
        new_codes (np.ndarray): ``[m, L]`` codes of the new items, before dedup.

    Returns:
        np.ndarray: ``[m, L + 1]`` unique semantic IDs.
    """
    used = defaultdict(set)
    for row in existing.tolist():
        used[tuple(row[:-1])].add(row[-1])
    dedup = np.zeros(len(new_codes), dtype=np.int64)
    for index, prefix in enumerate(map(tuple, new_codes.tolist())):
        while dedup[index] in used[prefix]:
            dedup[index] += 1
        used[prefix].add(int(dedup[index]))
    return np.concatenate([new_codes.astype(np.int64), dedup[:, None]], axis=1)


def code_vocab_sizes(trained, semantic_ids):
    """Codes per level once ``semantic_ids`` are in: the trained sizes, grown where a new ID needs
    a code beyond them (a collision past the largest trained dedup code, or an unused code)."""
    needed = (np.asarray(semantic_ids).max(axis=0) + 1).tolist()
    return [max(int(t), int(n)) for t, n in zip(trained, needed)]


def _write_semantic_ids(root, config, tokens, encoded, written):
    """The model's semantic-ID artifact plus the new items' rows, as ``<root>.sid.npz``."""
    path = config["semantic_ids_file"]
    old_tokens, old_codes, meta = read_semantic_id_file(path)
    semantic_ids = assign_dedup_codes(old_codes, np.asarray(encoded["codes"]))
    arrays = {
        "tokens": np.concatenate([old_tokens, np.asarray(tokens, dtype=str)]),
        "codes": np.concatenate([old_codes, semantic_ids]),
    }
    for name, old in read_extra_arrays(path).items():
        if name not in encoded["extra"]:
            raise DataError(f"{path}: the saved tokenizer gives no '{name}' for new items")
        arrays[name] = np.concatenate([old, np.asarray(encoded["extra"][name], dtype=old.dtype)])
    meta = {
        **meta,
        "added_items": int(meta.get("added_items", 0)) + len(tokens),
        "base_artifact": meta.get("base_artifact", path),  # beside it: the fitted tokenizer
    }
    out = root + ".sid.npz"
    written.append(out)
    save_npz(out, meta=meta_array(meta), **arrays)
    return out


def grown_state_dict(old_model, new_model, id_rows="zero", nearest=None):
    """The trained weights in the shapes of ``new_model``, which has more items.

    Code tables that grew are carried by :func:`grown_code_tables`. Equal shapes keep the
    trained value. A buffer whose shape changed is data-derived (item codes, quantized content,
    text vectors): the new model's, built from the extended data. A parameter with one row per
    item keeps its trained rows; new items get zero rows (``id_rows="zero"``), the mean of the
    trained items' rows (``"mean"``) or the rows of the trained items ``nearest`` names
    (``"nearest"``: one trained item id per new item, see :func:`nearest_trained_items`).

    Raises:
        ConfigError: A parameter that changed shape in another way.
    """
    old, new = old_model.state_dict(), new_model.state_dict()
    buffers = {name for name, _ in new_model.named_buffers()}
    n_old, n_new = old_model.n_items, new_model.n_items
    grown = grown_code_tables(old_model, new_model)
    for name, value in new.items():
        before = old[name]
        if name in grown:
            continue
        if before.shape == value.shape:
            grown[name] = before
        elif name in buffers:
            grown[name] = value
        elif before.shape[0] == n_old and value.shape[0] == n_new and before.shape[1:] == value.shape[1:]:
            grown[name] = torch.cat([before, _new_id_rows(before, n_new - n_old, id_rows, nearest)])
        else:
            raise ConfigError(
                f"cannot carry parameter '{name}' from {tuple(before.shape)} to {tuple(value.shape)} "
                f"when adding items"
            )
    return grown


def grown_code_tables(old_model, new_model):
    """A generative model's per-level code embeddings and output heads, grown to its new vocabulary.

    A code no trained item used has no trained row: it gets the level's mean embedding and mean
    output weights with the level's lowest output bias, so the model can generate it but ranks
    it like a code it never saw. Trained rows are kept; each level's padding row stays last.

    Returns:
        dict[str, torch.Tensor]: The grown tensors, by state-dict name (empty for other models).
    """
    old = old_model.state_dict()
    before, after = getattr(old_model, "vocab_sizes", []), getattr(new_model, "vocab_sizes", [])
    grown = {}
    for level, (size, new_size) in enumerate(zip(before, after)):
        if new_size == size:
            continue
        extra = new_size - size
        embedding = old[f"backbone.token_embeddings.{level}.weight"]  # [size + 1, d], padding last
        grown[f"backbone.token_embeddings.{level}.weight"] = torch.cat(
            [embedding[:size], _repeat_mean(embedding[:size], extra), embedding[size:]]
        )
        weight, bias = old[f"backbone.heads.{level}.weight"], old[f"backbone.heads.{level}.bias"]
        grown[f"backbone.heads.{level}.weight"] = torch.cat([weight, _repeat_mean(weight, extra)])
        grown[f"backbone.heads.{level}.bias"] = torch.cat([bias, bias.min().repeat(extra)])
    return grown


def _repeat_mean(rows, count):
    return rows.mean(dim=0, keepdim=True).repeat(count, 1)


def nearest_trained_items(dataset, n_trained):
    """For each added item (ids ``n_trained`` and up), the trained item (id 1 to ``n_trained - 1``)
    with the highest mean cosine over the dataset's modalities.

    Raises:
        ConfigError: The dataset has no item feature vectors to compare.
    """
    if not dataset.item_features:
        raise ConfigError(
            "id_rows='nearest' compares item feature vectors, and this model's dataset has none"
        )
    unit = {
        m: F.normalize(torch.as_tensor(f, dtype=torch.float32), dim=1)
        for m, f in dataset.item_features.items()
    }
    nearest = []
    for start in range(n_trained, dataset.item_num, NEAREST_CHUNK):
        stop = min(start + NEAREST_CHUNK, dataset.item_num)
        similarity = sum(vectors[start:stop] @ vectors[1:n_trained].T for vectors in unit.values())
        nearest.append(similarity.argmax(dim=1) + 1)
    return torch.cat(nearest)


def _new_id_rows(trained, count, id_rows, nearest=None):
    """``count`` rows for new items of a learned per-item table (row 0 is padding)."""
    if id_rows == "nearest":
        return trained[nearest]
    if id_rows == "mean":
        return trained[1:].mean(dim=0, keepdim=True).repeat(count, *([1] * (trained.dim() - 1)))
    return trained.new_zeros((count, *trained.shape[1:]))
