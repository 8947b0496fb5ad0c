"""BBQ tokenizer API: ``fit`` on item vectors, ``encode`` (also for cold-start items), statistics."""

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from recbole_bbq.errors import ConfigError
from recbole_bbq.resources import property_file
from recbole_bbq.tokenizer.bbq import FUSED, BBQTokenizerModel


def _load_defaults():
    """Tokenizer defaults: the ``tokenizer`` section of ``properties/tokenizer/BBQ.yaml``."""
    with open(property_file("tokenizer", "BBQ.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["tokenizer"]


DEFAULTS = _load_defaults()
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


def first_code_neighbour_agreement(behaviour, codes):
    """Share of items whose nearest behaviour neighbour (cosine) has the same first code."""
    vectors = F.normalize(torch.as_tensor(behaviour, dtype=torch.float32), dim=-1)
    similarity = vectors @ vectors.T
    similarity.fill_diagonal_(-float("inf"))
    neighbour = similarity.argmax(dim=1).numpy()
    return float((codes[:, 0] == codes[neighbour, 0]).mean())


def _normalise(matrix):
    return F.normalize(torch.as_tensor(np.asarray(matrix), dtype=torch.float32), dim=-1)


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

    def _build_model(self, features, behaviour):
        dims = {m: int(np.asarray(x).shape[1]) for m, x in features.items()}
        kwargs = {key: self.params[key] for key in MODEL_KEYS}
        return BBQTokenizerModel(dims, int(np.asarray(behaviour).shape[1]), **kwargs)

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
        p = self.params
        torch.manual_seed(p["seed"])
        generator = torch.Generator().manual_seed(p["seed"])
        x = {m: _normalise(v).to(device) for m, v in features.items()}
        b = _normalise(behaviour).to(device)
        self.model = model = self._build_model(features, behaviour).to(device)
        club_params = list(model.club.parameters())
        club_ids = {id(q) for q in club_params}
        main_params = [q for q in model.parameters() if id(q) not in club_ids]
        optimizer = torch.optim.Adam(main_params, lr=p["learning_rate"])
        club_optimizer = torch.optim.Adam(club_params, lr=p["club_learning_rate"])
        self._init_codebooks(x, b)

        n, start = len(b), time.time()
        epochs = tqdm(range(p["epochs"]), desc="BBQ tokenizer", disable=not show_progress)
        for epoch in epochs:
            model.train()
            totals = {}
            for batch in torch.randperm(n, generator=generator).split(p["batch_size"]):
                losses = self._step(
                    model, optimizer, club_optimizer, {m: v[batch] for m, v in x.items()}, b[batch]
                )
                for key, value in losses.items():
                    totals[key] = totals.get(key, 0.0) + value * len(batch) / n
            if p["reseed_dead_codes"] and epoch < p["epochs"] - 1:
                totals["reseeded"] = self._reseed(x, b, generator)
            self.history.append(totals)
            epochs.set_postfix(loss=f"{totals['total']:.4f}")
        self.fit_seconds = time.time() - start
        return self

    def _step(self, model, optimizer, club_optimizer, x, b):
        p = self.params
        losses, specific, z = model(x, b)
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

    @torch.no_grad()
    def _signal_latents(self, x, b):
        self.model.eval()
        _, z = self.model.latents(x, b)
        return z

    def _quantizer_inputs(self, z):
        """Per distinct quantizer, the latents it quantizes (all signals when shared)."""
        groups = {}
        for signal, quantizer in self.model.quantizers.items():
            groups.setdefault(id(quantizer), (quantizer, []))[1].append(z[signal])
        return [(quantizer, torch.cat(vectors)) for quantizer, vectors in groups.values()]

    def _init_codebooks(self, x, b):
        for quantizer, vectors in self._quantizer_inputs(self._signal_latents(x, b)):
            quantizer.init_kmeans(vectors, seed=self.params["seed"])

    def _reseed(self, x, b, generator):
        inputs = self._quantizer_inputs(self._signal_latents(x, b))
        return sum(quantizer.reseed_dead_codes(vectors, generator) for quantizer, vectors in inputs)

    def _require_fitted(self):
        if self.model is None:
            raise RuntimeError("BBQTokenizer.encode/statistics called before fit")

    @torch.no_grad()
    def encode(self, features, behaviour=None):
        """Semantic IDs and quantized vectors of items.

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
        x = {m: _normalise(v).to(device) for m, v in features.items()}
        b = None if behaviour is None else _normalise(behaviour).to(device)
        codes, quantized, z = model.encode(x, b)
        codes = {s: c.cpu().numpy() for s, c in codes.items()}
        return {
            "semantic_ids": deduplicate(codes[FUSED]),
            "codes": codes,
            "quantized": {s: q.cpu().numpy() for s, q in quantized.items()},
            "latents": {s: v.cpu().numpy() for s, v in z.items()},
        }

    @torch.no_grad()
    def statistics(self, features, behaviour):
        """Code statistics of the fused IDs, final loss terms and the final CLUB estimate."""
        self._require_fitted()
        encoded = self.encode(features, behaviour)
        stats = code_statistics(encoded["codes"][FUSED], self.params["codebook_size"])
        model = self.model.eval()
        device = next(model.parameters()).device
        x = {m: _normalise(v).to(device) for m, v in features.items()}
        specific, z = model.latents(x, _normalise(behaviour).to(device))
        stats["club_estimate"] = float(model.club_estimate(specific, z))
        stats["first_code_neighbour_agreement"] = first_code_neighbour_agreement(
            behaviour, encoded["codes"][FUSED]
        )
        final = self.history[-1] if self.history else {}
        stats.update({f"loss_{k}": v for k, v in final.items() if k != "reseeded"})
        stats["fit_seconds"] = self.fit_seconds
        return stats
