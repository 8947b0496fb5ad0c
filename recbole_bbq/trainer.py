"""Trainers: RecBole's trainers made to work on torch >= 2.6 and on multi-process CPU runs, with
the optimisation recipe, mixed precision, a recorded valid curve and resumable runs."""

import functools
import os
import pickle
import random
import re
import time
import uuid

import numpy as np
import scipy.sparse
import torch
from torch.nn.parallel import DistributedDataParallel

from recbole_bbq import compat  # noqa: F401  (before recbole)

from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import set_color

from recbole_bbq.data.io import atomic_path
from recbole_bbq.errors import CheckpointError, ConfigError
from recbole_bbq.schedule import build_lr_scheduler

# Why a training run ended (stored in run records and shown in comparison reports).
STOP_EARLY = "early_stopping"
STOP_EPOCHS = "epoch_limit"
STOP_BUDGET = "time_budget"
# ``mixed_precision`` values -> autocast dtype of the training step (None: fp32).
AMP_DTYPES = {None: None, "none": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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


class CompatTrainerMixin:
    """Fixes RecBole's :class:`~recbole.trainer.Trainer` without editing RecBole.

    * Saves checkpoints that load with ``torch.load(weights_only=True)``: a plain-data copy of
      the config instead of the pickled Config, written atomically; :func:`load_checkpoint`
      reads them without unpickling objects, so a crafted file cannot run code. RecBole's own
      checkpoints need ``trust_checkpoint_files: true`` (full unpickling, trusted files only).
    * Wraps the model in DDP without ``device_ids`` on CPU (RecBole passes ``[local_rank]``,
      which DDP rejects for CPU modules) and shares rank 0's checkpoint path with all ranks.
    * Gives every run its own checkpoint file (RecBole's name is only unique to the second).
    * ``max_train_seconds`` (config key, default none): stop training before the next epoch
      once this much wall time has passed since :meth:`fit` started and at least one
      validation has run; the best checkpoint so far is kept, as with early stopping.
    * The optimisation recipe: RecBole's ``learner``, ``weight_decay`` and ``clip_grad_norm``, plus
      ``lr_scheduler`` (constant, cosine or inverse_sqrt), ``warmup`` and ``min_lr_ratio``
      (:mod:`recbole_bbq.schedule`), stepped after every optimizer step.
    * ``mixed_precision: bf16`` (or ``fp16``): autocast of the training step on CPU or GPU.
    * After :meth:`fit`: ``valid_curve`` (one entry per validation: epoch, valid score and
      result, train loss, learning rate, seconds) and ``stop_reason`` (``early_stopping``,
      ``epoch_limit`` or ``time_budget``).
    * ``checkpoint_name`` (default none): the best checkpoint is ``<name>-best.pth`` and the whole
      training state is saved to ``<name>-last.pth`` after every validation; a run that finds that
      file resumes from it instead of from epoch 0.
    """

    def __init__(self, config, model):
        cpu_distributed = not config["single_spec"] and config["device"].type == "cpu"
        if cpu_distributed:
            # RecBole builds DDP in AbstractTrainer.__init__ only when single_spec is False.
            config["single_spec"] = True
            try:
                super().__init__(config, model)
            finally:
                config["single_spec"] = False
            self.distributed_model = DistributedDataParallel(self.model)
        else:
            super().__init__(config, model)
        if config["checkpoint_name"]:
            self.saved_model_file = os.path.join(self.checkpoint_dir, f"{config['checkpoint_name']}-best.pth")
        else:
            # RecBole names checkpoints <model>-<time to the second>.pth, so runs started in the
            # same second (parallel benchmark processes) overwrote each other's; add a random suffix.
            root, ext = os.path.splitext(self.saved_model_file)
            self.saved_model_file = f"{root}-{uuid.uuid4().hex[:8]}{ext}"
            if not config["single_spec"]:
                self.saved_model_file = self._rank0_value(self.saved_model_file)
        self._mixed_precision = config["mixed_precision"]
        if self._mixed_precision not in AMP_DTYPES:
            raise ConfigError(f"mixed_precision must be bf16, fp16 or ~, got '{self._mixed_precision}'")
        if self._mixed_precision == "fp16" and self.device.type == "cuda":
            self.enable_scaler = True  # fp16 gradients underflow without loss scaling
        self.valid_curve, self.stop_reason, self._epoch = [], None, -1

    def fit(
        self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None
    ):
        """RecBole's ``fit`` with the optimisation recipe, a wall-time budget, a recorded valid
        curve and resumable state (see the class docstring)."""
        self._fit_started = time.monotonic()
        self.valid_curve, self.stop_reason = [], None
        self._build_lr_scheduler(len(train_data))
        self._train_data = train_data
        if self._resume_train_state():
            if self.stop_reason:  # the run had finished before it was cut short
                return self.best_valid_score, self.best_valid_result

        def after_validation(epoch_idx, valid_score):
            self._save_train_state(epoch_idx)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        try:
            super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)
            self.stop_reason = STOP_EARLY if self.cur_step > self.stopping_step else STOP_EPOCHS
        except _TrainingBudgetSpent as budget:
            self.logger.info(str(budget))
            self.stop_reason = STOP_BUDGET
        self._save_train_state(self._epoch, finished=True)
        return self.best_valid_score, self.best_valid_result

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        self._check_time_budget(epoch_idx)
        self._epoch = epoch_idx
        dtype = AMP_DTYPES[self._mixed_precision]
        if dtype is None:
            return super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        # RecBole's epoch autocasts with the device's default dtype when enable_amp is set.
        previous = torch.get_autocast_dtype(self.device.type)
        self.enable_amp = True
        torch.set_autocast_dtype(self.device.type, dtype)
        try:
            return super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        finally:
            torch.set_autocast_dtype(self.device.type, previous)

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.valid_curve.append(
            {
                "epoch": self._epoch + 1,
                "valid_score": float(valid_score),
                "valid_result": {k: float(v) for k, v in valid_result.items()},
                "train_loss": _plain_loss(self.train_loss_dict.get(self._epoch)),
                "learning_rate": self.optimizer.param_groups[0]["lr"],
                "seconds": self._elapsed(),
            }
        )
        return valid_score, valid_result

    @property
    def epochs_trained(self):
        """Epochs trained so far (resumed runs count their earlier epochs)."""
        return self._epoch + 1

    def _elapsed(self):
        return time.monotonic() - getattr(self, "_fit_started", time.monotonic())

    def _check_time_budget(self, epoch_idx):
        budget = self.config["max_train_seconds"]
        if not budget or self.best_valid_result is None:
            return
        elapsed = self._elapsed()
        spent = elapsed >= float(budget)
        if not self.config["single_spec"]:
            spent = self._rank0_value(spent)  # every rank stops at the same epoch
        if spent:
            raise _TrainingBudgetSpent(
                f"max_train_seconds={budget} reached after {elapsed:.0f} s: stopping before epoch "
                f"{epoch_idx} and keeping the best checkpoint (valid {self.best_valid_score:.4f})"
            )

    # ---------------------------------------------------------------------------------------
    # Optimisation recipe
    # ---------------------------------------------------------------------------------------

    def _build_lr_scheduler(self, steps_per_epoch):
        """Step ``lr_scheduler`` after every optimizer step (RecBole's loop has no scheduler)."""
        scheduler = build_lr_scheduler(self.optimizer, self.config, steps_per_epoch)
        if getattr(self, "_scheduler_hook", None) is not None:
            self._scheduler_hook.remove()
        # The hook must not hold ``self``: a trainer kept alive by a cycle outlives
        # destroy_process_group, and freeing its DDP model at interpreter exit aborts gloo.
        self._scheduler_hook = self.optimizer.register_step_post_hook(lambda *_: scheduler.step())
        self.lr_scheduler = scheduler

    # ---------------------------------------------------------------------------------------
    # Resumable state (checkpoint_name)
    # ---------------------------------------------------------------------------------------

    def _state_file(self):
        name = self.config["checkpoint_name"]
        return os.path.join(self.checkpoint_dir, f"{name}-last.pth") if name else None

    def _save_train_state(self, epoch_idx, finished=False):
        """Write everything a cut-short run needs to continue (rank 0, atomic, plain data and
        tensors only so that it loads with ``weights_only=True``)."""
        path = self._state_file()
        if path is None or (not self.config["single_spec"] and self.config["local_rank"] != 0):
            return
        state = {
            "epoch": epoch_idx,
            "cur_step": self.cur_step,
            "best_valid_score": _plain_data(self.best_valid_score),
            "best_valid_result": _plain_data(self.best_valid_result),
            "valid_curve": _plain_data(self.valid_curve),
            "stop_reason": self.stop_reason if finished else None,
            "seconds": self._elapsed(),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "rng": _rng_states(self._train_data),
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def _resume_train_state(self):
        """Continue from ``<checkpoint_name>-last.pth`` when it exists; True if it did."""
        path = self._state_file()
        if path is None or not os.path.isfile(path):
            return False
        state = self._load_checkpoint(path)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.start_epoch, self._epoch = state["epoch"] + 1, state["epoch"]
        self.cur_step = state["cur_step"]
        self.best_valid_score, self.best_valid_result = state["best_valid_score"], state["best_valid_result"]
        self.valid_curve, self.stop_reason = state["valid_curve"], state["stop_reason"]
        self._fit_started = time.monotonic() - state["seconds"]
        _set_rng_states(state["rng"], self._train_data)
        self.logger.info(
            f"Resuming from {path}: epoch {self.start_epoch}, best valid {self.best_valid_score:.4f}"
        )
        return True

    @staticmethod
    def _rank0_value(value):
        """Every rank gets rank 0's ``value`` (file names embed a per-process timestamp)."""
        holder = [value]
        torch.distributed.broadcast_object_list(holder, src=0)
        return holder[0]

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's best-checkpoint save in a form that ``torch.load(weights_only=True)`` reads.

        The config is stored as plain data (RecBole pickles the Config object) and the file is
        written atomically, so an interrupted save never leaves a truncated checkpoint.
        """
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": _plain_data(self.config.final_config_dict),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": _plain_data(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": _pack_other_parameter(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")

    def _load_checkpoint(self, path):
        """:func:`load_checkpoint` on this trainer's device, trusting files only on opt-in."""
        return load_checkpoint(path, self.device, trust=bool(self.config[TRUST_KEY]))

    def _load_weights(self, checkpoint_file):
        if not self.config["single_spec"]:
            torch.distributed.barrier()  # rank 0 has finished writing the file
        checkpoint = self._load_checkpoint(checkpoint_file)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(_unpack_other_parameter(checkpoint.get("other_parameter")))
        self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return checkpoint

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """Evaluate as RecBole does, loading the best checkpoint with :func:`load_checkpoint`."""
        if eval_data and load_best_model:
            self._load_weights(model_file or self.saved_model_file)
        return super().evaluate(
            eval_data, load_best_model=False, model_file=model_file, show_progress=show_progress
        )

    def resume_checkpoint(self, resume_file):
        """Resume training from ``resume_file`` (model, optimizer, epoch and early-stop state)."""
        self.saved_model_file = str(resume_file)
        checkpoint = self._load_weights(self.saved_model_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")


def _plain_loss(loss):
    """An epoch's train loss as one float (RecBole keeps a sum of parts for tuple losses)."""
    return None if loss is None else float(sum(loss) if isinstance(loss, tuple) else loss)


def _rng_states(train_data):
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


def _set_rng_states(states, train_data):
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_rng_state(states["numpy"]))
    torch.set_rng_state(states["torch"].cpu())
    if states["batches"] is not None and getattr(train_data, "generator", None) is not None:
        train_data.generator.set_state(states["batches"].cpu())


def _numpy_rng_state(saved):
    """numpy's ``set_state`` tuple from :func:`_rng_states`' dict (or a trusted legacy tuple)."""
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


def _plain_data(value):
    """``value`` as JSON-like plain data (str, int, float, bool, None, list, dict).

    numpy scalars become Python numbers; anything else (torch.device, enums, ...) its ``str``.
    Exact type checks: an IntEnum or a numpy subclass would be pickled as its class.
    """
    if value is None or type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, np.generic):
        return _plain_data(value.item())
    if isinstance(value, dict):
        return {str(k): _plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain_data(v) for v in value]
    return str(value)


def _pack_other_parameter(other):
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


def _unpack_other_parameter(other):
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


class _TrainingBudgetSpent(Exception):
    """Raised inside :meth:`CompatTrainerMixin.fit` when ``max_train_seconds`` is spent."""


@functools.cache
def compatible_trainer(trainer_class):
    """Return ``trainer_class`` with :class:`CompatTrainerMixin` applied.

    Trainers that do not derive from RecBole's torch ``Trainer`` (the decision-tree ones) are
    returned unchanged.
    """
    if not issubclass(trainer_class, RecBoleTrainer) or issubclass(trainer_class, CompatTrainerMixin):
        return trainer_class
    return type(trainer_class.__name__, (CompatTrainerMixin, trainer_class), {})


Trainer = compatible_trainer(RecBoleTrainer)
