"""Fitted tokenizers saved beside their semantic-ID artifacts, to encode items added later.

Cold-start items must get their semantic IDs from the same fitted tokenizer that made the
training items' IDs. Every artifact that a tokenizer fits (BBQ, or TIGER/MMTIGER on feature
files) therefore has a weights file beside it, written just before the artifact itself:

* ``<dataset>.bbq-<key>.sid.npz`` -> ``<dataset>.bbq-<key>.tokenizer.pth``
* ``<dataset>.tiger-<key>.sid.npz`` / ``.mmtiger-...`` -> ``<dataset>.tiger-<key>.tokenizer.pth`` / ...

It holds tensors and plain data only (it loads with ``torch.load(weights_only=True)``):
``format``, ``kind`` (``bbq``, ``tiger``, ``mmtiger``), the artifact's ``cache_key``, a digest
of its semantic IDs (``codes_sha256``, so a weights file never passes for another fit's) and

* BBQ: ``params``, ``modality_dims`` (``[name, dim]`` pairs, in order), ``behaviour_dim`` and
  the ``BBQTokenizerModel`` ``state_dict``;
* TIGER/MMTIGER: ``parts``, one per modality in the artifact's code order, each with
  ``modality``, ``params`` (the ``rqvae`` settings), ``input_dim`` and the RQ-VAE ``state_dict``.

Codes read from published files (``semantic_ids_from``) have no tokenizer and no weights file.

Usage::

    from recbole_bbq.tokenizer.saved import load_tokenizer

    tokenizer = load_tokenizer("dataset/Scientific/Scientific.bbq-0123456789abcdef.sid.npz")
    tokenizer.modalities                       # e.g. ["text", "image"]
    out = tokenizer.encode({"text": T_new, "image": I_new})
    out["codes"]                               # [N, L] int64, the semantic IDs without dedup code
"""

import os

import numpy as np
import torch

from recbole_bbq.data.artifacts import KEY_CHARS, atomic_write, sha256_of_bytes
from recbole_bbq.data.features import non_finite_rows
from recbole_bbq.data.semantic_ids import read_semantic_id_file
from recbole_bbq.errors import DataError

WEIGHTS_ENDING = ".tokenizer.pth"
# Version of the weights file layout; a loader refuses layouts it does not know.
FORMAT = 1
KINDS = ("bbq", "tiger", "mmtiger")
_REBUILD = "delete {path} and rerun the tokenize stage (run_recbole_bbq.py --stage=tokenize)"


def tokenizer_weights_path(artifact_path):
    """The weights file beside ``artifact_path`` (``.sid.npz`` -> ``.tokenizer.pth``)."""
    path = str(artifact_path)
    base = path[: -len(".sid.npz")] if path.endswith(".sid.npz") else path
    return base + WEIGHTS_ENDING


def _codes_digest(semantic_ids):
    return sha256_of_bytes(np.asarray(semantic_ids, dtype=np.int64))


def save_tokenizer_weights(artifact_path, state, cache_key, semantic_ids):
    """Write the fitted tokenizer of ``artifact_path`` atomically, before the artifact itself.

    Args:
        artifact_path (str): The semantic-ID artifact the tokenizer made.
        state (dict): ``kind`` and the kind's tensors and plain data (see the module docstring).
        cache_key (str): The artifact's cache key.
        semantic_ids (np.ndarray): ``[N, L + 1]`` codes the artifact is about to hold.

    Returns:
        str: The weights file.
    """
    path = tokenizer_weights_path(artifact_path)
    payload = {**state, "format": FORMAT, "cache_key": cache_key, "codes_sha256": _codes_digest(semantic_ids)}
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_tokenizer(artifact_path, device="cpu"):
    """The fitted tokenizer that made the semantic-ID artifact ``artifact_path``.

    Args:
        artifact_path (str): A ``.sid.npz`` artifact of the BBQ, TIGER or MMTIGER tokenize stage.
        device (str): Torch device to encode on. Codes computed on another device than the fit's
            may differ for the rare vector that lies almost exactly between two codes.

    Returns:
        SavedTokenizer: Its ``modalities`` and ``encode(features)``.

    Raises:
        DataError: The artifact is missing or unreadable; it has no weights file (made before
            weights were saved, or codes from ``semantic_ids_from``); the weights file is
            unreadable, of an unknown layout, or belongs to another fit.
    """
    path = str(artifact_path)
    _, codes, meta = read_semantic_id_file(path)
    weights = tokenizer_weights_path(path)
    if not os.path.isfile(weights):
        raise _missing_weights_error(path, weights, meta)
    state = _read_weights(path, weights)
    if state.get("cache_key") != meta.get("cache_key") or state.get("codes_sha256") != _codes_digest(codes):
        raise DataError(
            f"{weights} does not belong to {path}: it was saved with other semantic IDs (cache key "
            f"{str(state.get('cache_key'))[:KEY_CHARS]}, artifact {str(meta.get('cache_key'))[:KEY_CHARS]}); "
            f"delete {weights}, then {_REBUILD.format(path=path)}"
        )
    return _build(path, weights, state, device)


def _missing_weights_error(path, weights, meta):
    """The :class:`DataError` for an artifact without weights file: published codes or an old one."""
    sources = [
        part["source"] for part in meta.get("parts", []) if isinstance(part, dict) and "source" in part
    ]
    if sources or "cache_key" not in meta:
        origin = f"read from {sources}" if sources else "not made by a recbole_bbq tokenize stage"
        return DataError(
            f"{path} cannot encode new items: its codes are {origin}, and codes from "
            f"semantic_ids_from (published or converted semantic IDs) come without a fitted "
            f"tokenizer. To encode cold-start items, unset semantic_ids_from so that the tokenize "
            f"stage fits TIGER/MMTIGER's RQ-VAEs on the feature files (or use BBQ)."
        )
    return DataError(
        f"{path} has no tokenizer weights file {weights}: the artifact was made before fitted "
        f"tokenizers were saved (or the file was removed), so new items cannot be encoded with "
        f"it. Rebuild it: {_REBUILD.format(path=path)}; the refit saves the weights."
    )


def _read_weights(path, weights):
    """The weights file's dict, loaded without unpickling objects."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch reports bad files as RuntimeError, UnpicklingError, EOFError, ...
        lines = str(error).strip().splitlines()
        cause = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
        raise DataError(
            f"{weights}: unreadable tokenizer weights file ({cause}); it may be truncated by an "
            f"interrupted write or be another kind of file. Delete it, then {_REBUILD.format(path=path)}"
        ) from None
    if not isinstance(state, dict) or state.get("kind") not in KINDS or state.get("format") != FORMAT:
        what = (
            f"format {state.get('format')}, kind {state.get('kind')!r}"
            if isinstance(state, dict)
            else "no dict"
        )
        raise DataError(
            f"{weights}: not a tokenizer weights file this version can read ({what}; expected format "
            f"{FORMAT}, kind one of {list(KINDS)}). Delete it, then {_REBUILD.format(path=path)}"
        )
    return state


def _build(path, weights, state, device):
    """The :class:`SavedTokenizer` of a checked weights dict."""
    from recbole_bbq.tokenizer.rqvae import rqvae_from_part
    from recbole_bbq.tokenizer.tokenizer import BBQTokenizer

    try:
        if state["kind"] == "bbq":
            tokenizer = BBQTokenizer.from_state(state)
            tokenizer.model.to(device)
            dims = {str(m): int(d) for m, d in state["modality_dims"]}
            return SavedBBQTokenizer(path, dims, tokenizer)
        parts = [(str(p["modality"]), rqvae_from_part(p).to(device)) for p in state["parts"]]
        dims = {m: int(p["input_dim"]) for (m, _), p in zip(parts, state["parts"])}
        return SavedRQVAETokenizer(path, state["kind"], dims, parts, device)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # ConfigError is a ValueError
        lines = str(error).strip().splitlines()
        cause = f"{type(error).__name__}: {lines[0] if lines else ''}"
        raise DataError(
            f"{weights}: the saved {state['kind']} tokenizer does not fit this version of recbole_bbq "
            f"({cause}). Delete it, then {_REBUILD.format(path=path)}"
        ) from None


class SavedTokenizer:
    """A fitted tokenizer loaded from its weights file (:func:`load_tokenizer`).

    Attributes:
        path (str): The artifact it made.
        kind (str): ``bbq``, ``tiger`` or ``mmtiger``.
        dims (dict[str, int]): Input size per modality it needs.
    """

    def __init__(self, path, kind, dims):
        self.path, self.kind, self.dims = path, kind, dict(dims)

    @property
    def modalities(self):
        """list[str]: The modalities :meth:`encode` needs, in the tokenizer's order."""
        return list(self.dims)

    def encode(self, features):
        """Semantic IDs of items, e.g. cold-start items, from their content vectors.

        Args:
            features (dict[str, np.ndarray]): ``[N, d_m]`` vectors per modality (rows = items;
                other keys are ignored). Rows are L2-normalised here, as at fit time.

        Returns:
            dict: ``codes`` ``[N, L]`` int64 (the semantic ID without the dedup code) and
            ``extra``, the artifact's per-signal arrays (BBQ: ``codes_<signal>`` and float32
            ``quantized_<signal>``, encoded without behaviour vectors; TIGER/MMTIGER: none).

        Raises:
            DataError: A modality is missing, has the wrong shape or size, or non-finite values.
        """
        return self._encode(self._checked(features))

    def _checked(self, features):
        """The needed modalities' arrays, each ``[N, d_m]``, finite, with one ``N`` for all."""
        if not hasattr(features, "keys"):
            raise DataError(f"tokenizer of {self.path}: features must be a dict {{modality: [N, d] array}}")
        inputs, rows = {}, None
        for modality, dim in self.dims.items():
            if modality not in features:
                raise DataError(
                    f"tokenizer of {self.path} needs modality '{modality}' (needs {self.modalities}, "
                    f"got {sorted(features.keys())}); pass its [N, {dim}] vectors"
                )
            array = np.asarray(features[modality])
            if array.ndim != 2 or array.dtype.kind not in "biuf" or array.shape[1] != dim:
                raise DataError(
                    f"tokenizer of {self.path}: modality '{modality}' must be a numeric [N, {dim}] array "
                    f"(expected dimension {dim}), got shape {list(array.shape)} of {array.dtype}"
                )
            row, count = non_finite_rows(array)
            if count:
                raise DataError(
                    f"tokenizer of {self.path}: modality '{modality}' has NaN or inf in row {row}"
                )
            if rows is not None and len(array) != rows:
                raise DataError(
                    f"tokenizer of {self.path}: modalities have different numbers of rows "
                    f"({self.modalities[0]}: {rows}, {modality}: {len(array)})"
                )
            inputs[modality], rows = array, len(array)
        return inputs

    def _encode(self, inputs):
        raise NotImplementedError


class SavedBBQTokenizer(SavedTokenizer):
    """The BBQ tokenizer of an artifact; items are encoded without behaviour vectors."""

    def __init__(self, path, dims, tokenizer):
        super().__init__(path, "bbq", dims)
        self.tokenizer = tokenizer

    def _encode(self, inputs):
        from recbole_bbq.tokenizer.bbq import FUSED

        encoded = self.tokenizer.encode(inputs, behaviour=None)
        extra = {}
        for signal, codes in encoded["codes"].items():
            extra[f"codes_{signal}"] = codes
            extra[f"quantized_{signal}"] = encoded["quantized"][signal].astype(np.float32)
        return {"codes": encoded["codes"][FUSED], "extra": extra}


class SavedRQVAETokenizer(SavedTokenizer):
    """The RQ-VAE(s) of a TIGER/MMTIGER artifact; codes are concatenated in part order."""

    def __init__(self, path, kind, dims, parts, device="cpu"):
        super().__init__(path, kind, dims)
        self.parts, self.device = parts, device

    def _encode(self, inputs):
        from recbole_bbq.tokenizer.rqvae import normalised_input, rqvae_codes

        codes = [rqvae_codes(model, normalised_input(inputs[m], self.device)) for m, model in self.parts]
        return {"codes": np.concatenate(codes, axis=1).astype(np.int64), "extra": {}}
