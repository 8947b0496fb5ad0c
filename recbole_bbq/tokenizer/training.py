"""The training loop shared by the RQ-VAE (TIGER/MMTIGER) and BBQ tokenizers.

Both seed torch, build their model, create Adam optimizers, initialise the codebooks with
k-means, then train on shuffled batches and re-seed dead codes after every epoch but the last.
:func:`train_quantizer` runs these steps in this order and :class:`QuantizerHooks` supplies what
differs (the model, the parameter groups, the loss step, the progress text). Random numbers are
drawn in the same order for both, so a seed fixes the codes.
"""

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm


@dataclass(frozen=True)
class LoopSettings:
    """Budget and display of one fit.

    Attributes:
        seed (int): Seeds torch's global RNG (model initialisation, dropout) and the generator
            of batch order and dead-code re-seeding.
        epochs (int): Passes over all rows.
        batch_size (int): Rows per step.
        description (str): Label of the progress bar.
        show_progress (bool): Show a tqdm bar over epochs.
        reseed_dead_codes (bool): After each epoch but the last, move unused codes onto data.
    """

    seed: int
    epochs: int
    batch_size: int
    description: str
    show_progress: bool = True
    reseed_dead_codes: bool = True

    @classmethod
    def from_params(cls, params, description, show_progress=True, reseed_dead_codes=True):
        """Settings from a tokenizer's ``params`` (its ``seed``, ``epochs`` and ``batch_size`` keys)."""
        return cls(
            seed=params["seed"],
            epochs=params["epochs"],
            batch_size=params["batch_size"],
            description=description,
            show_progress=show_progress,
            reseed_dead_codes=reseed_dead_codes,
        )


@dataclass
class TrainingResult:
    """What :func:`train_quantizer` returns.

    Attributes:
        model (torch.nn.Module): The trained model (left in training mode).
        history (list[dict[str, float]]): Per epoch, the row-weighted mean of every loss term
            :meth:`QuantizerHooks.train_step` returned, plus ``reseeded`` codes when re-seeding ran.
        seconds (float): Wall time of the epochs (after the k-means initialisation).
    """

    model: torch.nn.Module
    history: list
    seconds: float


class QuantizerHooks:
    """What one tokenizer does at each point of :func:`train_quantizer`; subclass and override."""

    def build_model(self):
        """The model, on its device (called right after seeding)."""
        raise NotImplementedError

    def parameter_groups(self, model):
        """``[(parameters, learning_rate), ...]``: one Adam optimizer each, in this order."""
        raise NotImplementedError

    def init_codebooks(self, model):
        """K-means initialisation of every codebook, before the first epoch."""
        raise NotImplementedError

    def train_step(self, model, optimizers, batch):
        """One optimisation step on the rows ``batch`` (a 1-D index tensor).

        Returns:
            dict[str, float]: Loss terms to average into the epoch's history (may be empty).
        """
        raise NotImplementedError

    def reseed_dead_codes(self, model, generator):
        """Move the codes unused since the last call onto data; return how many moved."""
        raise NotImplementedError

    def progress(self, totals):
        """Postfix of the progress bar after an epoch with mean loss terms ``totals``; {} for none."""
        return {}


def seeded_generator(seed):
    """Seed torch's global RNG and return a CPU generator seeded alike (batch order, re-seeding)."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_epoch(hooks, model, optimizers, n_rows, batch_size, generator):
    """One pass over ``n_rows`` rows in shuffled batches; the row-weighted mean of each loss term."""
    totals = {}
    for batch in torch.randperm(n_rows, generator=generator).split(batch_size):
        for key, value in hooks.train_step(model, optimizers, batch).items():
            totals[key] = totals.get(key, 0.0) + value * len(batch) / n_rows
    return totals


def train_quantizer(hooks, n_rows, settings, history=None):
    """Seed, build, initialise the codebooks with k-means, then train epoch by epoch.

    Args:
        hooks (QuantizerHooks): The tokenizer's model, optimiser groups and steps.
        n_rows (int): Number of training rows (items).
        settings (LoopSettings): Seed, budget and display.
        history (list, optional): Appended to epoch by epoch (a new list when None).

    Returns:
        TrainingResult: The model, the history and the time the epochs took.
    """
    generator = seeded_generator(settings.seed)
    model = hooks.build_model()
    optimizers = [torch.optim.Adam(params, lr=lr) for params, lr in hooks.parameter_groups(model)]
    hooks.init_codebooks(model)
    history = [] if history is None else history
    start = time.time()
    epochs = tqdm(range(settings.epochs), desc=settings.description, disable=not settings.show_progress)
    for epoch in epochs:
        model.train()
        totals = train_epoch(hooks, model, optimizers, n_rows, settings.batch_size, generator)
        if settings.reseed_dead_codes and epoch < settings.epochs - 1:
            totals["reseeded"] = hooks.reseed_dead_codes(model, generator)
        history.append(totals)
        postfix = hooks.progress(totals)
        if postfix:
            epochs.set_postfix(**postfix)
    return TrainingResult(model, history, time.time() - start)
