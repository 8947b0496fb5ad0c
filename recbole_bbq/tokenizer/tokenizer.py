"""BBQ tokenizer API: ``fit`` on item vectors, ``encode`` (also for cold-start items), statistics."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from recbole_bbq.checkpoint import plain_data
from recbole_bbq.errors import ConfigError
from recbole_bbq.tokenizer.bbq import FUSED, BBQTokenizerModel
from recbole_bbq.tokenizer.defaults import section_defaults
from recbole_bbq.tokenizer.training import LoopSettings, QuantizerHooks, train_quantizer

# Tokenizer defaults: the ``tokenizer`` section of ``properties/tokenizer/BBQ.yaml``.
DEFAULTS = section_defaults("BBQ.yaml")
# Items per chunk of encode and statistics: one chunk's encoder activations ([chunk, hidden_dim]
# per MLP) are the largest intermediate, instead of [N, hidden_dim] (1 GB per MLP at 1M items).
ENCODE_CHUNK_ROWS = 65_536
# first_code_neighbour_agreement: exact up to this many items, a random sample of queries above.
NEIGHBOUR_SAMPLE_SIZE = 10_000
# first_code_neighbour_agreement: similarities per chunk (2**26 floats = 256 MB).
NEIGHBOUR_CHUNK_ELEMENTS = 2**26
MODEL_KEYS = (
    "latent_dim",
    "hidden_dim",
    "levels",
    "codebook_size",
    "beta",
    "shared_codebook",
    "fuse",
    "fuse_mode",
    "temperature",
    "align_modalities",
    "dropout",
)


def tokenizer_params(overrides=None):
    """Defaults updated with ``overrides``; unknown keys are a :class:`ConfigError`."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown tokenizer keys {unknown}; known keys: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **overrides}


def deduplicate(codes):
    """Append a dedup code: 0 for the first item with a code tuple, 1 for the next, ...

    Args:
        codes (np.ndarray): ``[N, L]`` codes.

    Returns:
        np.ndarray: ``[N, L + 1]`` unique semantic IDs.
    """
    seen, dedup = {}, np.zeros(len(codes), dtype=np.int64)
    for row, key in enumerate(map(tuple, codes.tolist())):
        dedup[row] = seen.get(key, 0)
        seen[key] = dedup[row] + 1
    return np.concatenate([codes, dedup[:, None]], axis=1)


def code_statistics(codes, codebook_size):
    """Collision rate before dedup, largest dedup code, and usage/perplexity per level."""
    semantic_ids = deduplicate(codes)
    stats = {
        "items": len(codes),
        "collision_rate": 1.0 - len({tuple(row) for row in codes.tolist()}) / max(len(codes), 1),
        "max_dedup_code": int(semantic_ids[:, -1].max()) if len(codes) else 0,
    }
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codebook_size)
        probs = counts[counts > 0] / counts.sum()
        stats[f"level{level + 1}_usage"] = float((counts > 0).mean())
        stats[f"level{level + 1}_perplexity"] = float(math.exp(-(probs * np.log(probs)).sum()))
    return stats


def first_code_neighbour_agreement(behaviour, codes, sample_size=None, seed=0):
    """Share of items whose nearest behaviour neighbour (cosine) has the same first code.

    Up to ``sample_size`` items (default :data:`NEIGHBOUR_SAMPLE_SIZE`) the share is exact: every
    item is a query. Above it, the share is estimated on ``sample_size`` query items drawn at
    random (``seed``), each still searched against *all* items, so the estimate is unbiased
    (standard error below 0.005 at 10,000 queries). Queries are scored in row chunks, so at most
    :data:`NEIGHBOUR_CHUNK_ELEMENTS` similarities exist at once, never an ``[N, N]`` matrix.
    """
    vectors = F.normalize(torch.as_tensor(behaviour, dtype=torch.float32), dim=-1)
    n_items = len(vectors)
    sample_size = NEIGHBOUR_SAMPLE_SIZE if sample_size is None else int(sample_size)
    if n_items > sample_size:
        queries = np.sort(np.random.default_rng(seed).choice(n_items, size=sample_size, replace=False))
    else:
        queries = np.arange(n_items)
    chunk_rows = max(1, NEIGHBOUR_CHUNK_ELEMENTS // max(n_items, 1))
    neighbours = []
    for start in range(0, len(queries), chunk_rows):
        rows = queries[start : start + chunk_rows]
        similarity = vectors[rows] @ vectors.T
        similarity[np.arange(len(rows)), rows] = -float("inf")  # an item is not its own neighbour
        neighbours.append(similarity.argmax(dim=1).numpy())
    neighbour = np.concatenate(neighbours) if neighbours else np.zeros(0, dtype=np.int64)
    return float((codes[queries, 0] == codes[neighbour, 0]).mean())


def _normalise(matrix):
    return F.normalize(torch.as_tensor(np.asarray(matrix), dtype=torch.float32), dim=-1)


def _n_rows(features):
    return len(np.asarray(next(iter(features.values()))))


def _row_chunks(n_rows):
    """Row slices of at most :data:`ENCODE_CHUNK_ROWS` rows (one slice when the input is small)."""
    size = ENCODE_CHUNK_ROWS
    return [slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size)] or [slice(0, 0)]


def _chunk_inputs(features, behaviour, rows, device):
    """Normalised model inputs of the rows ``rows``: modality vectors and behaviour (or None)."""
    x = {m: _normalise(np.asarray(v)[rows]).to(device) for m, v in features.items()}
    return x, None if behaviour is None else _normalise(np.asarray(behaviour)[rows]).to(device)


def _store(out, key, value, rows, n_rows):
    """Write one chunk's ``value`` into ``out[key]``, an ``[n_rows, ...]`` array made on first use."""
    if key not in out:
        out[key] = np.empty((n_rows, *value.shape[1:]), dtype=value.dtype)
    out[key][rows] = value


def _quantizer_inputs(model, z):
    """Per distinct quantizer of ``model``, the latents it quantizes (all signals when shared)."""
    groups = {}
    for signal, quantizer in model.quantizers.items():
        groups.setdefault(id(quantizer), (quantizer, []))[1].append(z[signal])
    return [(quantizer, torch.cat(vectors)) for quantizer, vectors in groups.values()]


class _BBQTraining(QuantizerHooks):
    """BBQ's steps of the shared training loop: main loss plus CLUB's own step.

    Args:
        tokenizer (BBQTokenizer): Its ``params``; its ``model`` is set as soon as it is built.
        features (dict[str, array]): ``[N, d_m]`` vectors per modality.
        behaviour (array): ``[N, d_b]`` behaviour vectors.
        device (str): Torch device.
    """

    def __init__(self, tokenizer, features, behaviour, device):
        self.tokenizer, self.params, self.device = tokenizer, tokenizer.params, device
        self.dims = {m: int(np.asarray(v).shape[1]) for m, v in features.items()}
        self.behaviour_dim = int(np.asarray(behaviour).shape[1])
        self.x = {m: _normalise(v).to(device) for m, v in features.items()}
        self.b = _normalise(behaviour).to(device)

    def build_model(self):
        kwargs = {key: self.params[key] for key in MODEL_KEYS}
        self.tokenizer.model = BBQTokenizerModel(self.dims, self.behaviour_dim, **kwargs).to(self.device)
        return self.tokenizer.model

    def parameter_groups(self, model):
        club_params = list(model.club.parameters())
        club_ids = {id(q) for q in club_params}
        main_params = [q for q in model.parameters() if id(q) not in club_ids]
        return [(main_params, self.params["learning_rate"]), (club_params, self.params["club_learning_rate"])]

    @torch.no_grad()
    def _quantizer_inputs(self, model):
        """The latents of every row, computed in row chunks (no [N, hidden_dim] activations)."""
        model.eval()
        parts = [
            model.latents({m: v[rows] for m, v in self.x.items()}, self.b[rows])[1]
            for rows in _row_chunks(len(self.b))
        ]
        z = {signal: torch.cat([part[signal] for part in parts]) for signal in parts[0]}
        return _quantizer_inputs(model, z)

    def init_codebooks(self, model):
        for quantizer, vectors in self._quantizer_inputs(model):
            quantizer.init_kmeans(vectors, seed=self.params["seed"])

    def reseed_dead_codes(self, model, generator):
        inputs = self._quantizer_inputs(model)
        return sum(quantizer.reseed_dead_codes(vectors, generator) for quantizer, vectors in inputs)

    def train_step(self, model, optimizers, batch):
        p, (optimizer, club_optimizer) = self.params, optimizers
        losses, specific, z = model({m: v[batch] for m, v in self.x.items()}, self.b[batch])
        total = losses["rec"] + losses["rq"]
        if p["use_club"]:
            total = total + p["mi_weight"] * losses["mi"]
        if p["use_align"]:
            total = total + p["align_weight"] * losses["align"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        # CLUB's own step: maximise q's log-likelihood on the detached latents.
        club_optimizer.zero_grad()
        (-model.club_log_likelihood(specific, z)).backward()
        club_optimizer.step()
        return {"total": total.item(), **{k: v.item() for k, v in losses.items()}}

    def progress(self, totals):
        return {"loss": f"{totals['total']:.4f}"}


class BBQTokenizer:
    """Fit BBQ on item vectors and turn items into behaviour-bound semantic IDs.

    Example:
        >>> tokenizer = BBQTokenizer(levels=3, codebook_size=256).fit({"text": T, "image": I}, B)
        >>> result = tokenizer.encode({"text": T, "image": I}, B)
        >>> result["semantic_ids"]  # [N, L + 1] fused codes plus a dedup code

    Args:
        **params: Tokenizer keys (defaults and meaning: ``properties/tokenizer/BBQ.yaml``).
    """

    def __init__(self, **params):
        self.params = tokenizer_params(params)
        self.model = None
        self.history = []
        self.fit_seconds = float("nan")

    def fit(self, features, behaviour, device="cpu", show_progress=True):
        """Train the tokenizer.

        Args:
            features (dict[str, array]): ``[N, d_m]`` vectors per modality (rows = items).
            behaviour (array): ``[N, d_b]`` behaviour vectors of the same items.
            device (str): Torch device.
            show_progress (bool): Show a tqdm bar over epochs.

        Returns:
            BBQTokenizer: ``self``.
        """
        reseed = self.params["reseed_dead_codes"]
        settings = LoopSettings.from_params(self.params, "BBQ tokenizer", show_progress, reseed)
        hooks = _BBQTraining(self, features, behaviour, device)
        self.fit_seconds = train_quantizer(hooks, len(hooks.b), settings, history=self.history).seconds
        return self

    def to_state(self):
        """The fitted tokenizer as tensors and plain data (loads with ``weights_only=True``).

        Returns:
            dict: ``kind`` (``bbq``), ``params``, ``modality_dims`` (``[name, dim]`` pairs in
            the model's modality order), ``behaviour_dim`` and the model's ``state_dict`` (on CPU).
        """
        self._require_fitted()
        model = self.model
        return {
            "kind": "bbq",
            "params": plain_data(self.params),
            # The first Linear of each encoder gives the input sizes the model was built for.
            "modality_dims": [[m, int(model.aligned[m][0].in_features)] for m in model.modalities],
            "behaviour_dim": int(model.behaviour_encoder[0].in_features),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state):
        """A fitted tokenizer (on CPU, in eval mode) from what :meth:`to_state` returned.

        Raises:
            ConfigError: ``params`` has keys this version does not know.
            RuntimeError: The state dict does not fit the model the params describe.
        """
        tokenizer = cls(**state["params"])
        kwargs = {key: tokenizer.params[key] for key in MODEL_KEYS}
        dims = {str(m): int(d) for m, d in state["modality_dims"]}
        tokenizer.model = BBQTokenizerModel(dims, int(state["behaviour_dim"]), **kwargs)
        tokenizer.model.load_state_dict(state["state_dict"])
        tokenizer.model.eval()
        return tokenizer

    def _require_fitted(self):
        if self.model is None:
            raise RuntimeError("BBQTokenizer.encode/statistics called before fit")

    @torch.no_grad()
    def encode(self, features, behaviour=None):
        """Semantic IDs and quantized vectors of items, in row chunks of :data:`ENCODE_CHUNK_ROWS`.

        Args:
            features (dict[str, array]): ``[N, d_m]`` vectors per modality.
            behaviour (array, optional): ``[N, d_b]`` behaviour vectors. Cold-start items have
                none: their behaviour part is then the mean of their behaviour-aligned modality
                parts, which the alignment loss trains to match it.

        Returns:
            dict: ``semantic_ids`` [N, L+1] (fused codes + dedup), ``codes`` and ``quantized``
            per signal (numpy), and the continuous ``latents`` per signal.
        """
        self._require_fitted()
        model = self.model.eval()
        device = next(model.parameters()).device
        n_rows = _n_rows(features)
        out = {"codes": {}, "quantized": {}, "latents": {}}
        for rows in _row_chunks(n_rows):
            codes, quantized, z = model.encode(*_chunk_inputs(features, behaviour, rows, device))
            for kind, values in (("codes", codes), ("quantized", quantized), ("latents", z)):
                for signal, value in values.items():
                    _store(out[kind], signal, value.cpu().numpy(), rows, n_rows)
        return {"semantic_ids": deduplicate(out["codes"][FUSED]), **out}

    @torch.no_grad()
    def _latents(self, features, behaviour):
        """``model.latents`` of all rows, computed chunk by chunk (torch tensors, all rows)."""
        model = self.model.eval()
        device = next(model.parameters()).device
        parts = [
            model.latents(*_chunk_inputs(features, behaviour, rows, device))
            for rows in _row_chunks(_n_rows(features))
        ]
        specific = {m: torch.cat([part[0][m] for part in parts]) for m in parts[0][0]}
        return specific, {s: torch.cat([part[1][s] for part in parts]) for s in parts[0][1]}

    @torch.no_grad()
    def statistics(self, features, behaviour):
        """Code statistics of the fused IDs, final loss terms and the final CLUB estimate.

        Encoding runs in row chunks; ``first_code_neighbour_agreement`` is exact up to
        :data:`NEIGHBOUR_SAMPLE_SIZE` items and a sampled estimate above.
        """
        self._require_fitted()
        encoded = self.encode(features, behaviour)
        stats = code_statistics(encoded["codes"][FUSED], self.params["codebook_size"])
        specific, z = self._latents(features, behaviour)
        stats["club_estimate"] = float(self.model.club_estimate(specific, z))
        stats["first_code_neighbour_agreement"] = first_code_neighbour_agreement(
            behaviour, encoded["codes"][FUSED]
        )
        final = self.history[-1] if self.history else {}
        stats.update({f"loss_{k}": v for k, v in final.items() if k != "reseeded"})
        stats["fit_seconds"] = self.fit_seconds
        return stats
