"""Trainers: RecBole's trainers made to work on torch >= 2.6 and on multi-process CPU runs."""

import functools
import os
import time
import uuid

import torch
from torch.nn.parallel import DistributedDataParallel

from recbole_bbq import compat  # noqa: F401  (before recbole)

from recbole.trainer import Trainer as RecBoleTrainer


def load_checkpoint(path, device):
    """Load a RecBole checkpoint written by this package.

    RecBole checkpoints pickle the Config object, which ``torch.load``'s default
    ``weights_only=True`` (torch >= 2.6) refuses. The files are our own, so full unpickling is fine.
    """
    return torch.load(path, map_location=device, weights_only=False)


class CompatTrainerMixin:
    """Fixes RecBole's :class:`~recbole.trainer.Trainer` without editing RecBole.

    * Loads checkpoints with ``weights_only=False`` (torch >= 2.6).
    * Wraps the model in DDP without ``device_ids`` on CPU (RecBole passes ``[local_rank]``,
      which DDP rejects for CPU modules) and shares rank 0's checkpoint path with all ranks.
    * Gives every run its own checkpoint file (RecBole's name is only unique to the second).
    * ``max_train_seconds`` (config key, default none): stop training before the next epoch
      once this much wall time has passed since :meth:`fit` started and at least one
      validation has run; the best checkpoint so far is kept, as with early stopping.
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
        # RecBole names checkpoints <model>-<time to the second>.pth, so runs started in the same
        # second (parallel benchmark processes) overwrote each other's; add a random suffix.
        root, ext = os.path.splitext(self.saved_model_file)
        self.saved_model_file = f"{root}-{uuid.uuid4().hex[:8]}{ext}"
        if not config["single_spec"]:
            self.saved_model_file = self._rank0_value(self.saved_model_file)

    def fit(self, *args, **kwargs):
        """RecBole's ``fit`` with an optional wall-time budget (``max_train_seconds``)."""
        self._fit_started = time.monotonic()
        try:
            return super().fit(*args, **kwargs)
        except _TrainingBudgetSpent as budget:
            self.logger.info(str(budget))
            return self.best_valid_score, self.best_valid_result

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        self._check_time_budget(epoch_idx)
        return super()._train_epoch(train_data, epoch_idx, *args, **kwargs)

    def _check_time_budget(self, epoch_idx):
        budget = self.config["max_train_seconds"]
        if not budget or self.best_valid_result is None:
            return
        elapsed = time.monotonic() - getattr(self, "_fit_started", time.monotonic())
        spent = elapsed >= float(budget)
        if not self.config["single_spec"]:
            spent = self._rank0_value(spent)  # every rank stops at the same epoch
        if spent:
            raise _TrainingBudgetSpent(
                f"max_train_seconds={budget} reached after {elapsed:.0f} s: stopping before epoch "
                f"{epoch_idx} and keeping the best checkpoint (valid {self.best_valid_score:.4f})"
            )

    @staticmethod
    def _rank0_value(value):
        """Every rank gets rank 0's ``value`` (file names embed a per-process timestamp)."""
        holder = [value]
        torch.distributed.broadcast_object_list(holder, src=0)
        return holder[0]

    def _load_weights(self, checkpoint_file):
        if not self.config["single_spec"]:
            torch.distributed.barrier()  # rank 0 has finished writing the file
        checkpoint = load_checkpoint(checkpoint_file, self.device)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return checkpoint

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """Evaluate as RecBole does, loading the best checkpoint with ``weights_only=False``."""
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


class _TrainingBudgetSpent(Exception):
    """Raised inside :meth:`CompatTrainerMixin.fit` when ``max_train_seconds`` is spent."""


@functools.cache
def compatible_trainer(trainer_class):
    """Return ``trainer_class`` with :class:`CompatTrainerMixin` applied.

    Trainers that do not derive from RecBole's torch ``Trainer`` (the decision-tree ones) are
    returned unchanged.
    """
    if not issubclass(trainer_class, RecBoleTrainer) or issubclass(
        trainer_class, CompatTrainerMixin
    ):
        return trainer_class
    return type(trainer_class.__name__, (CompatTrainerMixin, trainer_class), {})


Trainer = compatible_trainer(RecBoleTrainer)
