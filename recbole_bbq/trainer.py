"""Trainers: RecBole's trainers made to work on torch >= 2.6 and on multi-process CPU runs, with
the optimisation recipe, mixed precision, a recorded valid curve and resumable runs."""

import functools
import os
import time
import uuid

import torch
from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import set_color
from torch.nn.parallel import DistributedDataParallel

from recbole_bbq.checkpoint import (
    TRUST_KEY,
    load_checkpoint,
    pack_other_parameter,
    plain_data,
    rng_states,
    set_rng_states,
    unpack_other_parameter,
)
from recbole_bbq.data.io import atomic_path
from recbole_bbq.errors import ConfigError
from recbole_bbq.evaluation import PerUserCollector, PerUserEvaluator
from recbole_bbq.schedule import build_lr_scheduler

# Why a training run ended (stored in run records and shown in comparison reports).
STOP_EARLY = "early_stopping"
STOP_EPOCHS = "epoch_limit"
STOP_BUDGET = "time_budget"
# ``mixed_precision`` values -> autocast dtype of the training step (None: fp32).
AMP_DTYPES = {None: None, "none": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    * Stops (as early stopping) once a validation has seen the weights with the learning rate
      at 0, e.g. a cosine held at its floor past ``lr_schedule_epochs``: no later epoch can change
      them, and RecBole's patience, which counts an equal score as an improvement, would never
      end a run whose best validation is that one.
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
    * Per-user metrics: after :meth:`evaluate`, ``last_per_user`` holds the evaluated users' ids
      and every top-k metric per user (:mod:`recbole_bbq.evaluation`). A multi-process (DDP) run
      keeps none (None): each process evaluates only its share of the users.
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
        # RecBole's collector and evaluator, also keeping each evaluation's per-user values.
        self.eval_collector, self.evaluator = PerUserCollector(config), PerUserEvaluator(config)
        self.last_per_user = None

    def fit(
        self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None
    ):
        """RecBole's ``fit`` with the optimisation recipe, a wall-time budget, a recorded valid
        curve and resumable state (see the class docstring)."""
        try:
            self._fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        finally:
            # RecBole never closes its SummaryWriter, whose thread then flushes into a folder
            # that may be gone (a test's temp dir); a later add_scalar reopens it.
            self.tensorboard.close()
        return self.best_valid_score, self.best_valid_result

    def _fit(self, train_data, valid_data, verbose, saved, show_progress, callback_fn):
        self._fit_started = time.monotonic()
        self.valid_curve, self.stop_reason = [], None
        self._build_lr_scheduler(len(train_data))
        self._train_data = train_data
        if self._resume_train_state():
            if self.stop_reason:  # the run had finished before it was cut short
                return

        def after_validation(epoch_idx, valid_score):
            self._save_train_state(epoch_idx)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        try:
            super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)
            self.stop_reason = STOP_EARLY if self.cur_step > self.stopping_step else STOP_EPOCHS
        except _TrainingStopped as stop:
            self.logger.info(str(stop))
            self.stop_reason = stop.reason
        self._save_train_state(self._epoch, finished=True)

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        self._check_time_budget(epoch_idx)
        self._check_learning_rate(epoch_idx)
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
            raise _TrainingStopped(
                STOP_BUDGET,
                f"max_train_seconds={budget} reached after {elapsed:.0f} s: stopping before epoch "
                f"{epoch_idx} and keeping the best checkpoint (valid {self.best_valid_score:.4f})",
            )

    def _check_learning_rate(self, epoch_idx):
        """Stop when the last validation saw the weights that every later step leaves unchanged."""
        frozen = all(group["lr"] == 0.0 for group in self.optimizer.param_groups)
        if frozen and self.valid_curve and self.valid_curve[-1]["learning_rate"] == 0.0:
            raise _TrainingStopped(
                STOP_EARLY,
                f"the learning rate is 0, so the weights of the last validation cannot change: "
                f"stopping after {epoch_idx} epochs, keeping the best checkpoint "
                f"(valid {self.best_valid_score:.4f})",
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
            "best_valid_score": plain_data(self.best_valid_score),
            "best_valid_result": plain_data(self.best_valid_result),
            "valid_curve": plain_data(self.valid_curve),
            "stop_reason": self.stop_reason if finished else None,
            "seconds": self._elapsed(),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "rng": rng_states(self._train_data),
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
        set_rng_states(state["rng"], self._train_data)
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
            "config": plain_data(self.config.final_config_dict),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": plain_data(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": pack_other_parameter(self.model.other_parameter()),
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
        self.model.load_other_parameter(unpack_other_parameter(checkpoint.get("other_parameter")))
        self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return checkpoint

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """Evaluate as RecBole does, loading the best checkpoint with :func:`load_checkpoint`.

        Afterwards ``last_per_user`` holds this evaluation's per-user values (see
        :class:`~recbole_bbq.evaluation.PerUserEvaluator`), or None in a multi-process run.
        """
        if eval_data and load_best_model:
            self._load_weights(model_file or self.saved_model_file)
        self.last_per_user = self.evaluator.per_user = None
        result = super().evaluate(
            eval_data, load_best_model=False, model_file=model_file, show_progress=show_progress
        )
        if self.config["single_spec"]:  # a DDP process sees only its share of the users
            self.last_per_user = self.evaluator.per_user
        return result

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


class _TrainingStopped(Exception):
    """Raised inside :meth:`CompatTrainerMixin.fit` to end training before an epoch, with the
    run's stop reason: ``max_train_seconds`` is spent, or the learning rate stays at 0."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


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
