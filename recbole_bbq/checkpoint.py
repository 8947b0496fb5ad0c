"""Checkpoint files that load with ``torch.load(weights_only=True)``.

What the trainer saves, as tensors and plain data only: the config as plain data, the model's
``other_parameter()`` (numpy arrays and scipy sparse matrices as tagged tensors) and the random
states of a resumable run. :func:`load_checkpoint` reads such files without unpickling objects.
"""

import pickle
import random
import re

import numpy as np
import scipy.sparse
import torch

from recbole_bbq.errors import CheckpointError

# Config key that allows full unpickling of checkpoint files (properties/overall.yaml).
TRUST_KEY = "trust_checkpoint_files"


def load_checkpoint(path, device, trust=False):
    """Load a checkpoint or resumable training state.

    Files written by this package hold only tensors and plain data, so they load with
    ``torch.load(weights_only=True)``, which cannot run code from the file. ``trust`` allows full
    unpickling, needed for RecBole's own checkpoints (they pickle the Config object) and for
    files written by older recbole_bbq versions; a crafted file can then run arbitrary code.

    Args:
        path (str or os.PathLike): Checkpoint file.
        device (str or torch.device): Where tensors are loaded (``map_location``).
        trust (bool): Unpickle arbitrary objects (``weights_only=False``); only for trusted files.

    Returns:
        dict: The saved state.

    Raises:
        CheckpointError: The file is missing, truncated, not a torch checkpoint, or holds objects
            that safe loading refuses; the message names the file and what to do.
    """
    try:
        return torch.load(path, map_location=device, weights_only=not trust)
    except Exception as error:  # torch reports bad files as RuntimeError, KeyError, EOFError, ...
        raise _checkpoint_error(path, error) from error


def _checkpoint_error(path, error):
    """The :class:`CheckpointError` for ``path`` that ``torch.load`` failed on with ``error``."""
    if isinstance(error, OSError):
        return CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}")
    message = str(error)
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in message:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        what = f"it references {found.group(1)}" if found else "it is not plain tensor data"
        return CheckpointError(
            f"checkpoint {path} was refused by safe loading (torch.load weights_only=True): {what}. "
            f"Checkpoints from RecBole or from older recbole_bbq versions pickle Python objects; "
            f"if you trust this file, set {TRUST_KEY}: true to unpickle it (that can run "
            f"arbitrary code), or retrain to write a safe checkpoint."
        )
    # torch's own text can run to several sentences; its first one says what failed.
    first = message.strip().splitlines()[0].split(". ")[0] if message.strip() else ""
    cause = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return CheckpointError(
        f"checkpoint {path} is not a readable torch checkpoint ({cause}); it may be truncated by "
        f"an interrupted write or be another kind of file. Delete it (a resumable run then "
        f"starts over) or point to another file."
    )


def rng_states(train_data):
    """Random states that decide the next epochs: Python, numpy, torch and the batch order.

    Only tuples, lists, numbers and tensors, so that the state loads with ``weights_only=True``.
    """
    generator = getattr(train_data, "generator", None)
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": str(name),
            "key": key.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "batches": None if generator is None else generator.get_state(),
    }


def set_rng_states(states, train_data):
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_rng_state(states["numpy"]))
    torch.set_rng_state(states["torch"].cpu())
    if states["batches"] is not None and getattr(train_data, "generator", None) is not None:
        train_data.generator.set_state(states["batches"].cpu())


def _numpy_rng_state(saved):
    """numpy's ``set_state`` tuple from :func:`rng_states`' dict (or a trusted legacy tuple)."""
    if not isinstance(saved, dict):
        return saved  # written by an older version (loaded with trust_checkpoint_files)
    key = np.asarray(saved["key"], dtype=np.uint32)
    return saved["bit_generator"], key, saved["pos"], saved["has_gauss"], saved["cached_gaussian"]


# ---------------------------------------------------------------------------------------------
# Plain data for weights_only checkpoints
# ---------------------------------------------------------------------------------------------

_PLAIN_TYPES = (bool, int, float, str)
# Marks a value that _pack_value turned into tensors; _unpack_value rebuilds it.
_PACKED = "__recbole_bbq_packed__"


def plain_data(value):
    """``value`` as JSON-like plain data (str, int, float, bool, None, list, dict).

    numpy scalars become Python numbers; anything else (torch.device, enums, ...) its ``str``.
    Exact type checks: an IntEnum or a numpy subclass would be pickled as its class.
    """
    if value is None or type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, np.generic):
        return plain_data(value.item())
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain_data(v) for v in value]
    return str(value)


def pack_other_parameter(other):
    """``model.other_parameter()`` as tensors and plain data, for a weights_only checkpoint.

    Submodules are left out: their weights are already in the state dict.
    """
    return {
        key: _pack_value(value, key)
        for key, value in (other or {}).items()
        if not isinstance(value, torch.nn.Module)
    }


def _pack_value(value, key):
    """One other_parameter value: tensors and plain data as they are, numpy arrays and scipy
    sparse matrices (RecBole's EASE, ItemKNN, ...) as tagged tensors."""
    if value is None or type(value) in _PLAIN_TYPES or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return {_PACKED: "ndarray", "data": torch.from_numpy(np.ascontiguousarray(value))}
    if scipy.sparse.issparse(value):
        coo = value.tocoo()
        return {
            _PACKED: "sparse",
            "format": value.format,
            "shape": list(coo.shape),
            "row": torch.from_numpy(coo.row.astype(np.int64)),
            "col": torch.from_numpy(coo.col.astype(np.int64)),
            "data": torch.from_numpy(np.ascontiguousarray(coo.data)),
        }
    if isinstance(value, list):
        return [_pack_value(v, key) for v in value]
    if isinstance(value, tuple):  # namedtuples become plain tuples
        return tuple(_pack_value(v, key) for v in value)
    if isinstance(value, dict):  # dict subclasses (defaultdict) become plain dicts
        return {_pack_value(k, key): _pack_value(v, key) for k, v in value.items()}
    raise CheckpointError(
        f"cannot save the model's other parameter '{key}' ({type(value).__name__}) in a "
        f"weights_only checkpoint: only tensors, numpy arrays, scipy sparse matrices and plain data"
    )


def unpack_other_parameter(other):
    """Inverse of :func:`_pack_other_parameter` (untagged values are returned as they are)."""
    return None if other is None else {key: _unpack_value(value) for key, value in other.items()}


def _unpack_value(value):
    if isinstance(value, dict):
        kind = value.get(_PACKED)
        if kind == "ndarray":
            return value["data"].cpu().numpy()
        if kind == "sparse":
            row, col, data = (value[k].cpu().numpy() for k in ("row", "col", "data"))
            matrix = scipy.sparse.coo_matrix((data, (row, col)), shape=tuple(value["shape"]))
            return matrix.asformat(value["format"])
        return {k: _unpack_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unpack_value(v) for v in value)
    return value
