"""Learning-rate schedules of the optimisation recipe (``lr_scheduler``, ``warmup``).

Every schedule is a multiplier of ``learning_rate`` per optimizer step, applied with
:class:`torch.optim.lr_scheduler.LambdaLR`, so the state resumes with the optimizer's.
"""

import math

from torch.optim.lr_scheduler import LambdaLR

from recbole_bbq.errors import ConfigError

SCHEDULES = ("constant", "cosine", "inverse_sqrt")


def warmup_steps(warmup, total_steps):
    """Warmup length in steps: ``warmup`` >= 1 is a step count, 0 < ``warmup`` < 1 a fraction.

    Raises:
        ConfigError: If ``warmup`` is negative.
    """
    warmup = float(warmup or 0)
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0 (steps, or a fraction of the run below 1), got {warmup}")
    return int(round(warmup * total_steps)) if warmup < 1 else int(warmup)


def lr_multiplier(schedule, step, warmup, total_steps, min_ratio=0.0):
    """Multiplier of the base learning rate after ``step`` optimizer steps.

    * ``constant``: 1 after a linear warmup.
    * ``cosine``: linear warmup, then a half cosine from 1 down to ``min_ratio`` at ``total_steps``
      (the MQL4GRec / HuggingFace recipe).
    * ``inverse_sqrt``: linear warmup, then ``sqrt(warmup / step)`` (T5 and TIGER; with no warmup
      it decays from step 1).

    Args:
        schedule (str): One of :data:`SCHEDULES`.
        step (int): Optimizer steps taken so far.
        warmup (int): Warmup steps.
        total_steps (int): Steps of the whole run (``epochs`` x batches per epoch).
        min_ratio (float): Floor of the cosine, as a fraction of the base rate.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warmup, 1) / max(step, 1))
    raise ConfigError(f"lr_scheduler must be one of {SCHEDULES}, got '{schedule}'")


def build_lr_scheduler(optimizer, config, steps_per_epoch):
    """The ``LambdaLR`` of ``config``'s ``lr_scheduler``, ``warmup`` and ``min_lr_ratio``.

    Args:
        optimizer (torch.optim.Optimizer): The optimizer whose rate it scales.
        config (Config): Run configuration. The horizon is ``lr_schedule_epochs`` (default
            ``epochs``); past it the cosine stays at its floor, so early stopping can end a run
            whose epoch cap lies beyond the schedule.
        steps_per_epoch (int): Optimizer steps per epoch.

    Raises:
        ConfigError: For an unknown schedule or a negative warmup.
    """
    schedule = str(config["lr_scheduler"] or "constant").lower()
    if schedule not in SCHEDULES:
        raise ConfigError(f"lr_scheduler must be one of {SCHEDULES}, got '{config['lr_scheduler']}'")
    horizon = config["lr_schedule_epochs"] or config["epochs"]
    total = max(1, int(horizon) * int(steps_per_epoch))
    warmup = warmup_steps(config["warmup"], total)
    min_ratio = float(config["min_lr_ratio"] or 0.0)
    return LambdaLR(optimizer, lambda step: lr_multiplier(schedule, step, warmup, total, min_ratio))
