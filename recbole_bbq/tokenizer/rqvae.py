"""TIGER/MMTIGER tokenizers: RQ-VAEs over content vectors, or published codes, plus a dedup code."""

import hashlib
import json
import os
from logging import getLogger

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from recbole_bbq.data.features import align_to_items, feature_path, read_feature_file
from recbole_bbq.data.semantic_ids import (
    align_codes,
    read_semantic_id_file,
    semantic_id_path,
    write_semantic_id_file,
)
from recbole_bbq.errors import ConfigError, DataError
from recbole_bbq.tokenizer.bbq import mlp
from recbole_bbq.tokenizer.quantizer import ResidualQuantizer
from recbole_bbq.tokenizer.tokenizer import code_statistics, deduplicate

RQVAE_DEFAULTS = {
    "modality": "text",
    "levels": 3,
    "codebook_size": 256,
    "latent_dim": 64,
    "hidden_dim": 256,
    "beta": 0.25,
    "epochs": 100,
    "batch_size": 256,
    "learning_rate": 0.001,
    "seed": 2020,
}


class RQVAE(nn.Module):
    """MLP encoder, residual quantizer, MLP decoder."""

    def __init__(self, input_dim, latent_dim, hidden_dim, levels, codebook_size, beta):
        super().__init__()
        self.encoder = mlp(input_dim, hidden_dim, latent_dim)
        self.quantizer = ResidualQuantizer(latent_dim, levels, codebook_size, beta)
        self.decoder = mlp(latent_dim, hidden_dim, input_dim)

    def forward(self, x):
        z_q, codes, rq_loss = self.quantizer(self.encoder(x))
        return F.mse_loss(self.decoder(z_q), x) + rq_loss, codes


def fit_rqvae(features, params, device="cpu", show_progress=True):
    """Train an RQ-VAE on ``features`` [N, d] and return its codes [N, levels] (no dedup)."""
    torch.manual_seed(params["seed"])
    generator = torch.Generator().manual_seed(params["seed"])
    x = F.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float32), dim=-1).to(device)
    model = RQVAE(
        x.shape[1],
        params["latent_dim"],
        params["hidden_dim"],
        params["levels"],
        params["codebook_size"],
        params["beta"],
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["learning_rate"])
    with torch.no_grad():
        model.quantizer.init_kmeans(model.encoder(x), seed=params["seed"])
    for epoch in tqdm(range(params["epochs"]), desc="RQ-VAE", disable=not show_progress):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(params["batch_size"]):
            loss, _ = model(x[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch < params["epochs"] - 1:
            with torch.no_grad():
                model.quantizer.reseed_dead_codes(model.encoder(x), generator)
    model.eval()
    with torch.no_grad():
        codes, _ = model.quantizer.quantize(model.encoder(x))
    return codes.cpu().numpy()


def _published_codes(config, source, item_tokens):
    """Codes of a published semantic-ID file (path or name in the dataset folder), in item order."""
    path = (
        source if os.path.isfile(source) else semantic_id_path(config["data_path"], config["dataset"], source)
    )
    tokens, codes, _ = read_semantic_id_file(path)
    # Published codes may collide; TIGER appends a dedup code, so uniqueness is not required here.
    aligned = align_codes(path, tokens, codes, ["[PAD]", *item_tokens], require_unique=False)
    return path, aligned[1:].numpy()


def _as_list(value):
    return [value] if isinstance(value, str) else list(value or [])


def _code_sources(config, kind, params, item_tokens, show_progress):
    """Cache-key parts and code builders of each part of the semantic ID.

    TIGER has one part (``rqvae.modality`` or one ``semantic_ids_from`` file); MMTIGER has one
    per modality (``mmtiger_modalities``, default ``modalities``) or per published file, each
    with its own RQ-VAE and codebooks.
    """
    published = _as_list(config["semantic_ids_from"])
    if published:
        if kind == "tiger" and len(published) > 1:
            raise ConfigError(
                f"TIGER takes one semantic_ids_from file, got {published}; MMTIGER concatenates several"
            )
        sources = []
        for name in published:
            path, codes = _published_codes(config, name, item_tokens)
            sources.append(
                ({"source": os.path.abspath(path), "size": os.path.getsize(path)}, lambda c=codes: c)
            )
        return sources
    if kind == "tiger":
        modalities = [params["modality"]]
    else:
        modalities = _as_list(config["mmtiger_modalities"] or config["modalities"])
        if not modalities:
            raise ConfigError(
                "MMTIGER needs modalities: set 'mmtiger_modalities' or 'modalities' (e.g. [text, image])"
            )
    sources = []
    for modality in modalities:
        path = (config["feature_files"] or {}).get(modality) or feature_path(
            config["data_path"], config["dataset"], modality
        )
        if not os.path.isfile(path):
            raise ConfigError(f"{kind.upper()}: modality '{modality}' has no feature file {path}")
        features, _ = align_to_items(read_feature_file(path), ["[PAD]", *item_tokens])
        features = features[1:].numpy()
        key = {
            "modality": modality,
            "params": params,
            "features": hashlib.sha256(features.tobytes()).hexdigest(),
        }
        sources.append((key, lambda f=features: fit_rqvae(f, params, config["device"], show_progress)))
    return sources


def tiger_artifact(config, kind, sources, item_tokens):
    """Path, cache key and key parts of the semantic-ID file built from ``sources``.

    Args:
        config (Config): The run configuration (``data_path``, ``dataset``).
        kind (str): ``tiger`` or ``mmtiger``.
        sources (list[tuple[dict, Callable]]): :func:`_code_sources`' ``(key part, build)`` pairs.
        item_tokens (list[str]): Item tokens, in RecBole's id order.

    Returns:
        tuple[str, str, dict]: Path, full key, and the parts the key hashes.
    """
    key_parts = {
        "kind": kind,
        "parts": [part for part, _ in sources],
        "items": hashlib.sha256("\x1f".join(item_tokens).encode()).hexdigest(),
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
    return os.path.join(config["data_path"], f"{config['dataset']}.{kind}-{key[:16]}.sid.npz"), key, key_parts


def tiger_semantic_ids(config, item_tokens, show_progress=True, kind="tiger"):
    """Build (or reuse) the semantic-ID file of TIGER (``kind="tiger"``) or MMTIGER (``"mmtiger"``).

    TIGER quantizes one content vector; MMTIGER quantizes every modality with its own RQ-VAE
    (no shared codebook, no behaviour alignment) and concatenates the per-modality codes. Both
    append a dedup code.

    Returns:
        tuple[str, str, dict]: Path, cache key and code statistics (before dedup).
    """
    params = {**RQVAE_DEFAULTS, **(config["rqvae"] or {})}
    sources = _code_sources(config, kind, params, item_tokens, show_progress)
    out, key, key_parts = tiger_artifact(config, kind, sources, item_tokens)
    if os.path.isfile(out):
        try:
            _, _, meta = read_semantic_id_file(out)
            if meta.get("cache_key") == key:
                return out, key, meta["stats"]
        except DataError:
            pass
    codes = np.concatenate([np.asarray(build()) for _, build in sources], axis=1)
    stats = code_statistics(codes, int(codes.max()) + 1)
    write_semantic_id_file(
        out, item_tokens, deduplicate(codes), {"cache_key": key, "stats": stats, **key_parts}
    )
    getLogger().info(
        f"{kind.upper()} semantic IDs: {out} (collision rate before dedup {stats['collision_rate']:.4f})"
    )
    return out, key, stats
