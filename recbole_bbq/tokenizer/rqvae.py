"""TIGER/MMTIGER tokenizers: RQ-VAEs over content vectors, or published codes, plus a dedup code.

Defaults of the ``rqvae`` section: ``properties/tokenizer/RQVAE.yaml``.
"""

import os
from logging import getLogger

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_bbq.checkpoint import plain_data
from recbole_bbq.data.artifacts import (
    check_building_allowed,
    check_cache_key,
    keyed_path,
    reuse_cached,
    sha256_of,
    sha256_of_bytes,
)
from recbole_bbq.data.features import align_to_items, configured_feature_path, read_feature_file
from recbole_bbq.data.semantic_ids import (
    align_codes,
    read_semantic_id_file,
    semantic_id_path,
    write_semantic_id_file,
)
from recbole_bbq.errors import ConfigError
from recbole_bbq.tokenizer.bbq import mlp
from recbole_bbq.tokenizer.defaults import with_defaults
from recbole_bbq.tokenizer.quantizer import NEAREST_CHUNK_ROWS, ResidualQuantizer
from recbole_bbq.tokenizer.saved import save_tokenizer_weights
from recbole_bbq.tokenizer.tokenizer import code_statistics, deduplicate
from recbole_bbq.tokenizer.training import LoopSettings, QuantizerHooks, train_quantizer


def rqvae_params(config):
    """The RQ-VAE settings of ``config``: its ``rqvae`` keys over ``properties/tokenizer/RQVAE.yaml``."""
    return with_defaults("RQVAE.yaml", config["rqvae"])


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


def build_rqvae(input_dim, params):
    """The (untrained) RQ-VAE of the ``rqvae`` settings ``params`` for ``input_dim``-d vectors."""
    p = params
    return RQVAE(input_dim, p["latent_dim"], p["hidden_dim"], p["levels"], p["codebook_size"], p["beta"])


def normalised_input(features, device="cpu"):
    """``features`` [N, d] as a float32 tensor on ``device``, each row L2-normalised."""
    return F.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float32), dim=-1).to(device)


@torch.no_grad()
@torch.no_grad()
def rqvae_codes(model, x):
    """Codes [N, levels] (numpy int64) of the normalised input ``x`` (:func:`normalised_input`).

    Encodes row chunks of :data:`NEAREST_CHUNK_ROWS`, so the encoder's activations for all N
    rows never exist at once (the codes of a row do not depend on the others).
    """
    model.eval()
    codes = [model.quantizer.quantize(model.encoder(chunk))[0] for chunk in x.split(NEAREST_CHUNK_ROWS)]
    return torch.cat(codes).cpu().numpy()


class _RQVAETraining(QuantizerHooks):
    """The RQ-VAE's steps of the shared training loop: reconstruction plus quantizer loss."""

    def __init__(self, x, params, device):
        self.x, self.params, self.device = x, params, device

    def build_model(self):
        return build_rqvae(self.x.shape[1], self.params).to(self.device)

    def parameter_groups(self, model):
        return [(model.parameters(), self.params["learning_rate"])]

    @torch.no_grad()
    def init_codebooks(self, model):
        model.quantizer.init_kmeans(model.encoder(self.x), seed=self.params["seed"])

    def train_step(self, model, optimizers, batch):
        (optimizer,) = optimizers
        loss, _ = model(self.x[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {}

    @torch.no_grad()
    def reseed_dead_codes(self, model, generator):
        return model.quantizer.reseed_dead_codes(model.encoder(self.x), generator)


def fit_rqvae_model(features, params, device="cpu", show_progress=True):
    """Train an RQ-VAE on ``features`` [N, d]; return its codes [N, levels] (no dedup) and itself.

    Args:
        features (array): ``[N, d]`` content vectors (L2-normalised here).
        params (dict): The ``rqvae`` settings (:func:`rqvae_params`).
        device (str): Torch device.
        show_progress (bool): Show a tqdm bar over epochs.

    Returns:
        tuple[np.ndarray, RQVAE]: The codes and the fitted model (in eval mode).
    """
    x = normalised_input(features, device)
    settings = LoopSettings.from_params(params, "RQ-VAE", show_progress)
    model = train_quantizer(_RQVAETraining(x, params, device), len(x), settings).model
    return rqvae_codes(model, x), model


def fit_rqvae(features, params, device="cpu", show_progress=True):
    """Train an RQ-VAE on ``features`` [N, d] and return its codes [N, levels] (no dedup).

    Same arguments as :func:`fit_rqvae_model`, which also returns the fitted model.
    """
    return fit_rqvae_model(features, params, device, show_progress)[0]


def rqvae_part_state(modality, params, model):
    """One part of a TIGER/MMTIGER weights file: the fitted RQ-VAE of ``modality``.

    Returns:
        dict: ``modality``, ``params`` (plain data), ``input_dim`` and the CPU ``state_dict``.
    """
    return {
        "modality": modality,
        "params": plain_data(params),
        "input_dim": int(model.encoder[0].in_features),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def rqvae_from_part(part):
    """The fitted RQ-VAE (on CPU, in eval mode) of a :func:`rqvae_part_state` part."""
    model = build_rqvae(int(part["input_dim"]), part["params"])
    model.load_state_dict(part["state_dict"])
    return model.eval()


def _fit_part(modality, features, params, device, show_progress):
    """``(codes, weights part)`` of one modality's freshly fitted RQ-VAE."""
    codes, model = fit_rqvae_model(features, params, device, show_progress)
    return codes, rqvae_part_state(modality, params, model)


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


def _published_sources(config, kind, published, item_tokens):
    """One ``(key part, build)`` pair per published semantic-ID file."""
    if kind == "tiger" and len(published) > 1:
        raise ConfigError(
            f"TIGER takes one semantic_ids_from file, got {published}; MMTIGER concatenates several"
        )
    sources = []
    for name in published:
        path, codes = _published_codes(config, name, item_tokens)
        # Published codes come without a model: no weights part (None).
        part = {"source": os.path.abspath(path), "size": os.path.getsize(path)}
        sources.append((part, lambda c=codes: (c, None)))
    return sources


def _quantized_modalities(config, kind, params):
    """The modalities that get an RQ-VAE: ``rqvae.modality`` (TIGER) or every listed one (MMTIGER)."""
    if kind == "tiger":
        return [params["modality"]]
    modalities = _as_list(config["mmtiger_modalities"] or config["modalities"])
    if not modalities:
        raise ConfigError(
            "MMTIGER needs modalities: set 'mmtiger_modalities' or 'modalities' (e.g. [text, image])"
        )
    return modalities


def _fitted_sources(config, kind, item_tokens, show_progress):
    """One ``(key part, build)`` pair per modality, ``build`` fitting its RQ-VAE (and saving its state)."""
    params = rqvae_params(config)
    sources = []
    for modality in _quantized_modalities(config, kind, params):
        path = configured_feature_path(config, modality)
        if not os.path.isfile(path):
            raise ConfigError(f"{kind.upper()}: modality '{modality}' has no feature file {path}")
        features, _ = align_to_items(read_feature_file(path), ["[PAD]", *item_tokens])
        features = features[1:].numpy()
        key = {"modality": modality, "params": params, "features": sha256_of_bytes(features)}
        sources.append(
            (key, lambda m=modality, f=features: _fit_part(m, f, params, config["device"], show_progress))
        )
    return sources


def code_sources(config, kind, item_tokens, show_progress=True):
    """Cache-key parts and code builders of each part of the semantic ID.

    TIGER has one part (``rqvae.modality`` or one ``semantic_ids_from`` file); MMTIGER has one
    per modality (``mmtiger_modalities``, default ``modalities``) or per published file, each
    with its own RQ-VAE and codebooks.

    Args:
        config (Config): A stage config (:func:`recbole_bbq.pipeline.stage_config`).
        kind (str): ``tiger`` or ``mmtiger``.
        item_tokens (list[str]): Item tokens, in RecBole's id order.
        show_progress (bool): Show the RQ-VAE progress bars when a build fits one.

    Returns:
        list[tuple[dict, Callable[[], tuple]]]: ``(key part, build)`` pairs; ``build()``
        returns that part's ``[n_items, levels]`` codes and its weights part
        (:func:`rqvae_part_state`; None for published codes, which have no model).

    Raises:
        ConfigError: Several published files for TIGER, no modalities for MMTIGER, or a
            modality without a feature file.
    """
    published = _as_list(config["semantic_ids_from"])
    if published:
        return _published_sources(config, kind, published, item_tokens)
    return _fitted_sources(config, kind, item_tokens, show_progress)


def tiger_artifact(config, kind, sources, item_tokens):
    """Path, cache key and key parts of the semantic-ID file built from ``sources``.

    Args:
        config (Config): The run configuration (``data_path``, ``dataset``).
        kind (str): ``tiger`` or ``mmtiger``.
        sources (list[tuple[dict, Callable]]): :func:`code_sources`' ``(key part, build)`` pairs.
        item_tokens (list[str]): Item tokens, in RecBole's id order.

    Returns:
        tuple[str, str, dict]: Path, full key, and the parts the key hashes.
    """
    key_parts = {
        "kind": kind,
        "parts": [part for part, _ in sources],
        "items": sha256_of_bytes("\x1f".join(item_tokens)),
    }
    key = sha256_of(key_parts)
    return keyed_path(config, kind, key, ".sid.npz"), key, key_parts


def _cached_statistics(path, expected_key):
    """The code statistics of the semantic-ID file ``path`` if it was built for ``expected_key``."""
    _, _, meta = read_semantic_id_file(path)
    check_cache_key(path, meta, expected_key)
    return meta["stats"]


def tiger_semantic_ids(config, item_tokens, show_progress=True, kind="tiger"):
    """Build (or reuse) the semantic-ID file of TIGER (``kind="tiger"``) or MMTIGER (``"mmtiger"``).

    TIGER quantizes one content vector; MMTIGER quantizes every modality with its own RQ-VAE
    (no shared codebook, no behaviour alignment) and concatenates the per-modality codes. Both
    append a dedup code. When every part was fitted here (not ``semantic_ids_from``), the fitted
    RQ-VAEs are saved first beside the file (:func:`recbole_bbq.tokenizer.saved.load_tokenizer`
    loads them to encode new items); a reused file is returned as it is.

    Returns:
        tuple[str, str, dict]: Path, cache key and code statistics (before dedup).
    """
    sources = code_sources(config, kind, item_tokens, show_progress)
    out, key, key_parts = tiger_artifact(config, kind, sources, item_tokens)
    stats = reuse_cached(out, key, _cached_statistics)
    if stats is not None:
        return out, key, stats
    check_building_allowed(out)
    built = [build() for _, build in sources]
    codes = np.concatenate([np.asarray(part_codes) for part_codes, _ in built], axis=1)
    stats = code_statistics(codes, int(codes.max()) + 1)
    semantic_ids = deduplicate(codes)
    parts = [part for _, part in built]
    if all(part is not None for part in parts):
        # Weights first: a semantic-ID file written by this code always has them beside it.
        save_tokenizer_weights(out, {"kind": kind, "parts": parts}, key, semantic_ids)
    write_semantic_id_file(out, item_tokens, semantic_ids, {"cache_key": key, "stats": stats, **key_parts})
    getLogger().info(
        f"{kind.upper()} semantic IDs: {out} (collision rate before dedup {stats['collision_rate']:.4f})"
    )
    return out, key, stats
