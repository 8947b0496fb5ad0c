"""Stage 3: fit the BBQ tokenizer on a dataset and save the semantic-ID artifact.

The artifact ``<data_path>/<dataset>.bbq-<key>.sid.npz`` is a semantic-ID file (``tokens``,
``codes`` = fused codes plus dedup code) with extra arrays ``codes_<signal>`` and
``quantized_<signal>`` for every signal (behaviour, each modality, fused) and the statistics in
its meta. ``<key>`` hashes the feature files, the behaviour vectors and the tokenizer config, so a
changed input never reuses a stale artifact. The fitted tokenizer is saved just before it, as
``<dataset>.bbq-<key>.tokenizer.pth`` (:func:`recbole_bbq.tokenizer.saved.load_tokenizer` loads
it to encode cold-start items). A per-level code-usage plot
``<dataset>.bbq-<key>.usage.png`` is saved beside it, and redrawn from the artifact when a reused
artifact has none (e.g. the run that made it was killed while drawing). Temporary files that a
killed writer left next to either are removed before they are written.
"""

import os
from logging import getLogger

import numpy as np

from recbole_bbq.data.artifacts import (
    atomic_write,
    check_building_allowed,
    check_cache_key,
    keyed_path,
    meta_array,
    reuse_cached,
    save_npz,
    sha256_of,
    sha256_of_bytes,
)
from recbole_bbq.data.features import align_to_items
from recbole_bbq.data.io import remove_stale_temp_files
from recbole_bbq.data.semantic_ids import read_extra_arrays, read_semantic_id_file
from recbole_bbq.errors import DataError
from recbole_bbq.tokenizer.behaviour import behaviour_embeddings
from recbole_bbq.tokenizer.saved import save_tokenizer_weights
from recbole_bbq.tokenizer.tokenizer import BBQTokenizer, tokenizer_params


def tokenizer_cache_key(params, item_tokens, features, behaviour_key):
    """Hash of the tokenizer config, the item set, every modality matrix and the behaviour key."""
    parts = {
        "params": params,
        "items": sha256_of_bytes(np.asarray(item_tokens, dtype=str)),
        "features": {m: sha256_of_bytes(x) for m, x in sorted(features.items())},
        "behaviour": behaviour_key,
    }
    return sha256_of(parts)


def artifact_path(config, key):
    """``<data_path>/<dataset>.bbq-<key[:16]>.sid.npz``."""
    return keyed_path(config, "bbq", key, ".sid.npz")


def usage_plot_path(path):
    """The code-usage plot beside the artifact ``path`` (``.sid.npz`` -> ``.usage.png``)."""
    return path[: -len(".sid.npz")] + ".usage.png" if path.endswith(".sid.npz") else path + ".usage.png"


def tokenizer_features(config):
    """The multi-modal dataset, its item tokens and its modality matrices (padding excluded).

    Raises:
        DataError: If the dataset lists no modalities.
    """
    from recbole_bbq.data import MultiModalSequentialDataset

    dataset = MultiModalSequentialDataset(config)
    if not dataset.modalities:
        raise DataError(
            f"dataset '{config['dataset']}' lists no modalities; the BBQ tokenizer needs at least one"
        )
    features = {m: dataset.item_features[m][1:].numpy() for m in dataset.modalities}
    return dataset, list(dataset.item_tokens())[1:], features


def tokenizer_artifact_path(config, item_tokens, features, behaviour_key):
    """``(path, key)`` of the artifact that ``config`` and these inputs need."""
    key = tokenizer_cache_key(tokenizer_params(config["tokenizer"]), item_tokens, features, behaviour_key)
    return artifact_path(config, key), key


def tokenizer_inputs(config, show_progress=True):
    """Item tokens, modality matrices and behaviour vectors, all in dataset item order.

    Returns:
        tuple: ``(dataset, item_tokens, features, behaviour, behaviour_key)``; padding excluded.
    """
    dataset, item_tokens, features = tokenizer_features(config)
    behaviour_file = behaviour_embeddings(config, show_progress=show_progress)
    behaviour, _ = align_to_items(behaviour_file, list(dataset.item_tokens()))
    return dataset, item_tokens, features, behaviour[1:].numpy(), behaviour_file.meta["cache_key"]


def save_artifact(path, item_tokens, encoded, stats, meta):
    """Write the tokenizer artifact atomically (see the module docstring for its arrays)."""
    arrays = {"tokens": np.asarray(item_tokens, dtype=str), "codes": encoded["semantic_ids"]}
    for signal, codes in encoded["codes"].items():
        arrays[f"codes_{signal}"] = codes
        arrays[f"quantized_{signal}"] = encoded["quantized"][signal].astype(np.float32)
    arrays["meta"] = meta_array({**meta, "stats": stats})
    save_npz(path, **arrays)


def load_artifact(path, expected_key=None):
    """Load a tokenizer artifact, checking it was built for ``expected_key``.

    Returns:
        dict: ``tokens``, ``codes`` (semantic IDs), ``codes_<signal>``, ``quantized_<signal>``, ``meta``.

    Raises:
        DataError: If the file is missing, truncated, not an artifact, or stale.
    """
    tokens, codes, meta = read_semantic_id_file(path)
    check_cache_key(path, meta, expected_key)
    extra = read_extra_arrays(path)
    if not extra:
        raise DataError(f"{path}: a semantic-ID file, but not a BBQ tokenizer artifact")
    return {"tokens": tokens, "codes": codes, "meta": meta, **extra}


def plot_code_usage(path, codes, codebook_size):
    """Save a per-level histogram of how many items use each code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = codes.shape[1]
    figure, axes = plt.subplots(1, levels, figsize=(4 * levels, 3), squeeze=False)
    for level, axis in enumerate(axes[0]):
        counts = np.sort(np.bincount(codes[:, level], minlength=codebook_size))[::-1]
        axis.bar(np.arange(codebook_size), counts, width=1.0)
        axis.set_title(f"level {level + 1}: {int((counts > 0).sum())}/{codebook_size} codes used")
        axis.set_xlabel("code (sorted by use)")
        axis.set_ylabel("items")
    figure.tight_layout()
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    plt.close(figure)


def ensure_usage_plot(path, artifact):
    """Draw the code-usage plot of a reused artifact when it is absent; return the plot path.

    Args:
        path (str): The artifact path.
        artifact (dict): What :func:`load_artifact` returned for it.
    """
    plot = usage_plot_path(path)
    remove_stale_temp_files(plot)
    if not os.path.isfile(plot):
        codebook_size = artifact["meta"]["params"]["codebook_size"]
        plot_code_usage(plot, artifact["codes_fused"], codebook_size)
        getLogger().info(f"tokenizer: redrew the missing code-usage plot {plot}")
    return plot


def format_statistics(stats):
    """One line per statistic, e.g. ``collision rate before dedup: 0.0123``."""
    lines = [
        f"items: {stats['items']}",
        f"collision rate before dedup: {stats['collision_rate']:.4f}",
        f"largest dedup code: {stats['max_dedup_code']}",
    ]
    level = 1
    while f"level{level}_usage" in stats:
        lines.append(f"level {level} code usage: {stats[f'level{level}_usage']:.4f}")
        lines.append(f"level {level} perplexity: {stats[f'level{level}_perplexity']:.2f}")
        level += 1
    lines.append(f"final CLUB estimate: {stats['club_estimate']:.4f}")
    lines.append(
        f"nearest behaviour neighbour shares first code: {stats['first_code_neighbour_agreement']:.4f}"
    )
    lines += [f"final loss {k[5:]}: {v:.4f}" for k, v in stats.items() if k.startswith("loss_")]
    lines.append(f"fit time (s): {stats['fit_seconds']:.1f}")
    return "\n".join(lines)


def _warn_unusable(error):
    getLogger().warning(f"tokenizer: rebuilding unusable artifact ({error})")


def run_tokenizer_stage(config, show_progress=True):
    """Fit (or reuse) the BBQ tokenizer for ``config``'s dataset.

    Args:
        config (Config): Run configuration with ``modalities``, ``behaviour`` and ``tokenizer``.
        show_progress (bool): Show progress bars.

    Returns:
        tuple[str, dict]: The artifact path and its statistics.
    """
    logger = getLogger()
    params = tokenizer_params(config["tokenizer"])
    _, item_tokens, features, behaviour, behaviour_key = tokenizer_inputs(config, show_progress)
    path, key = tokenizer_artifact_path(config, item_tokens, features, behaviour_key)
    remove_stale_temp_files(path)
    artifact = reuse_cached(path, key, load_artifact, on_unusable=_warn_unusable)
    if artifact is not None:
        logger.info(f"tokenizer: reusing {path}")
        ensure_usage_plot(path, artifact)
        return path, artifact["meta"]["stats"]
    check_building_allowed(path)
    tokenizer = BBQTokenizer(**params).fit(
        features, behaviour, device=config["device"], show_progress=show_progress
    )
    encoded = tokenizer.encode(features, behaviour)
    stats = tokenizer.statistics(features, behaviour)
    meta = {"cache_key": key, "behaviour_key": behaviour_key, "params": params, "modalities": list(features)}
    # Weights first: an artifact written by this code always has its tokenizer beside it.
    save_tokenizer_weights(path, tokenizer.to_state(), key, encoded["semantic_ids"])
    save_artifact(path, item_tokens, encoded, stats, meta)
    plot_code_usage(usage_plot_path(path), encoded["codes"]["fused"], params["codebook_size"])
    logger.info(f"tokenizer: saved {path}\n{format_statistics(stats)}")
    return path, stats
