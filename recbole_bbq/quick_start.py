"""Training entry points: single run, hyper-parameter objective, multi-process (DDP) runs, and
loading a saved model back with its data.

Mirrors ``recbole.quick_start`` without importing it (it imports ray at import time).
"""

import gc
import logging
import os
from logging import getLogger

import torch.distributed as dist
from recbole.utils import calculate_valid_score, init_seed, set_color

from recbole_bbq.checkpoint import load_checkpoint, unpack_other_parameter
from recbole_bbq.config import Config
from recbole_bbq.evaluation import USERS
from recbole_bbq.utils import create_dataset, data_preparation, get_model, get_trainer, init_logger

# Decimals of the stored per-user test values (enough for any mean; keeps run records small).
PER_USER_DECIMALS = 6


def _train_and_test(config, saved=True, verbose=True, test=True):
    """Build dataset, model and trainer from ``config``; train, then test the best checkpoint.

    Args:
        config (Config): The run's config.
        saved (bool): Save the best checkpoint and test it (otherwise test the last weights).
        verbose (bool): Log and show progress.
        test (bool): Evaluate the test split; False never evaluates it (``test_result`` and
            ``test_per_user`` are None), e.g. for tuning on valid.

    Returns:
        dict: See :func:`run_recbole_bbq`.
    """
    logger = getLogger()
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid_score, best_valid_result = trainer.fit(
        train_data,
        valid_data,
        verbose=verbose,
        saved=saved,
        show_progress=config["show_progress"] and verbose,
    )
    test_result, test_per_user = None, None
    if test:
        test_result = trainer.evaluate(
            test_data, load_best_model=saved, show_progress=config["show_progress"] and verbose
        )
        test_per_user = per_user_record(dataset, getattr(trainer, "last_per_user", None), config)
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    if test:
        logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "valid_curve": getattr(trainer, "valid_curve", []),
        "stop_reason": getattr(trainer, "stop_reason", None),
        "epochs_trained": getattr(trainer, "epochs_trained", None),
        "test_per_user": test_per_user,
        "model_file": trainer.saved_model_file if saved else None,
    }


def per_user_record(dataset, per_user, config):
    """The per-user test values as stored in a run's result (plain lists, small JSON).

    Args:
        dataset (Dataset): The run's dataset (maps user ids to their tokens).
        per_user (dict | None): A trainer's ``last_per_user`` (user ids and metric columns).
        config (Config): The run's config.

    Returns:
        dict | None: ``{"users": [user tokens], "<metric>@<k>": [values rounded to 6 decimals],
        ...}`` for every metric at the valid metric's cut-off (e.g. ``ndcg@10``, ``recall@10``),
        which keeps records small; None when the trainer kept none (a multi-process run, or no
        top-k metric).
    """
    if per_user is None:
        if not config["single_spec"]:
            getLogger().info("per-user test metrics are not kept in a multi-process run")
        return None
    tokens = dataset.id2token(config["USER_ID_FIELD"], per_user[USERS])
    record = {USERS: [str(token) for token in tokens]}
    cutoff = "@" + str(config["valid_metric"]).split("@")[-1]
    for name, values in per_user.items():
        if name != USERS and name.endswith(cutoff):
            record[name] = [round(float(value), PER_USER_DECIMALS) for value in values]
    return record


def run_recbole_bbq(
    model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None, test=True
):
    """Train and test one model on one dataset, like ``recbole.quick_start.run_recbole``.

    Args:
        model (str, optional): Model name (plugin or RecBole).
        dataset (str, optional): Dataset name.
        config_file_list (list[str], optional): YAML files that override the defaults.
        config_dict (dict, optional): Parameters that override the YAML files.
        saved (bool): Save the best checkpoint and test it (otherwise test the last weights).
        queue (multiprocessing.SimpleQueue, optional): Rank 0 puts its result here in DDP runs.
        test (bool): Evaluate the test split; False never evaluates it (tuning on valid).

    Returns:
        dict: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``
        (None without ``test``), ``valid_curve`` (one entry per validation), ``stop_reason``
        (``early_stopping``, ``epoch_limit`` or ``time_budget``), ``epochs_trained`` and
        ``test_per_user`` (``{"users": [user tokens], "ndcg@10": [...], ...}``: the test users
        only, one value per user and top-k metric; None without ``test`` and in multi-process
        runs, where each process evaluates only its share of the users).
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    distributed = not config["single_spec"] and dist.is_initialized()
    try:
        # Only a run without test passes ``test``: stand-ins of _train_and_test keep working.
        result = _train_and_test(config, saved=saved, **({} if test else {"test": False}))
        if distributed:
            dist.barrier()  # no rank tears down while another still communicates
    finally:
        # Free trainers left in reference cycles (the lazy torch._dynamo import makes one) while
        # the process group lives: a DDP model freed at interpreter exit aborts gloo (SIGABRT).
        gc.collect()
        if distributed:
            dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def _run_rank(rank, model, dataset, config_file_list, kwargs):
    """Body of one spawned DDP process (module-level so that ``spawn`` can pickle it)."""
    config_dict = dict(kwargs.get("config_dict") or {}, local_rank=rank)
    run_recbole_bbq(
        model,
        dataset,
        config_file_list,
        config_dict=config_dict,
        saved=kwargs.get("saved", True),
        queue=kwargs.get("queue"),
        test=kwargs.get("test", True),
    )


def run(
    model,
    dataset,
    config_file_list=None,
    config_dict=None,
    saved=True,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
    test=True,
):
    """Run one model, in this process or as ``nproc`` DDP processes on this node.

    Args:
        model (str): Model name.
        dataset (str): Dataset name.
        config_file_list (list[str], optional): YAML config files.
        config_dict (dict, optional): Parameter overrides.
        saved (bool): Save and test the best checkpoint.
        nproc (int): Processes on this node (one per GPU, or CPU processes with gloo).
        world_size (int): Processes over all nodes; ``-1`` means ``nproc``.
        ip (str): Address of the rank-0 node.
        port (str): Free TCP port on the rank-0 node.
        group_offset (int): Global rank of this node's first process.
        test (bool): Evaluate the test split; False never evaluates it (tuning on valid).

    Returns:
        dict | None: The result of rank 0 (see :func:`run_recbole_bbq`); None on nodes other
        than the first.
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_bbq(
            model, dataset, config_file_list, config_dict=config_dict, saved=saved, test=test
        )
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {})
    config_dict.update(
        world_size=nproc if world_size == -1 else world_size,
        ip=ip,
        port=port,
        nproc=nproc,
        offset=group_offset,
    )
    kwargs = {"config_dict": config_dict, "queue": queue, "saved": saved, "test": test}
    mp.spawn(_run_rank, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def objective_function(config_dict=None, config_file_list=None, saved=True, test=True):
    """Objective for RecBole's ``HyperTuning`` (hyperopt), without ray.

    Args:
        config_dict (dict, optional): The sampled hyper-parameters plus fixed settings.
        config_file_list (list[str], optional): YAML config files.
        saved (bool): Save and test the best checkpoint.
        test (bool): Evaluate the test split; False never evaluates it (tuning on valid).

    Returns:
        dict: ``model`` plus the keys of :func:`run_recbole_bbq`'s result.
    """
    config = Config(config_dict=config_dict, config_file_list=config_file_list)
    init_seed(config["seed"], config["reproducibility"])
    logger = getLogger()
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
    init_logger(config)
    logging.basicConfig(level=logging.ERROR)
    result = _train_and_test(config, saved=saved, verbose=False, test=test)
    return {"model": config["model"], **result}


# Keys that Config derives from the other keys or from this machine (device, process group,
# parsed sampling settings); a config rebuilt from a checkpoint derives them again.
DERIVED_KEYS = frozenset(
    {
        "MODEL_TYPE",
        "MODEL_INPUT_TYPE",
        "eval_type",
        "device",
        "single_spec",
        "local_rank",
        "world_size",
        "nproc",
        "ip",
        "port",
        "offset",
        "valid_neg_sample_args",
        "test_neg_sample_args",
        "enable_amp",
        "enable_scaler",
    }
)


def saved_settings(saved_config):
    """The ``config_dict`` that rebuilds a checkpoint's config (its plain-data ``config``).

    Derived keys are left out, ``data_path`` is turned back into the folder that holds the
    dataset folder (RecBole stores ``<data_path>/<dataset>``), and "no negative sampling" back
    into ``~``.
    """
    settings = {key: value for key, value in saved_config.items() if key not in DERIVED_KEYS}
    settings["data_path"] = os.path.dirname(os.path.normpath(saved_config["data_path"]))
    negatives = settings.get("train_neg_sample_args")
    if isinstance(negatives, dict) and negatives.get("distribution") == "none":
        settings["train_neg_sample_args"] = None  # RecBole's parsed form of "no sampling"
    return settings


def load_data_and_model(model_file, config_dict=None, trust=False):
    """Rebuild a saved model with its config, dataset and dataloaders, like RecBole's function.

    Works for plugin and RecBole models. The dataset is the multi-modal one where the model
    needs it, with the feature files, semantic IDs and added items (:mod:`recbole_bbq.catalogue`)
    named in the saved config; those files must still be where the config says.

    Args:
        model_file (str): A checkpoint written by this package's trainer (``saved/<name>.pth``).
        config_dict (dict, optional): Overrides of the saved settings (e.g. ``{"device": ...}``
            keys such as ``use_gpu``, ``eval_batch_size``).
        trust (bool): Unpickle arbitrary objects (RecBole's own checkpoints); only for files you
            trust (see :func:`recbole_bbq.checkpoint.load_checkpoint`).

    Returns:
        tuple: ``(config, model, dataset, train_data, valid_data, test_data)``; the model is in
        eval mode with the saved weights.

    Raises:
        CheckpointError: The file is missing, truncated or refused by safe loading.
    """
    checkpoint = load_checkpoint(model_file, "cpu", trust=trust)
    config = saved_config(checkpoint, config_dict)
    init_logger(config)
    model, dataset, train_data, valid_data, test_data = build_model(config)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(unpack_other_parameter(checkpoint.get("other_parameter")))
    return config, model.eval(), dataset, train_data, valid_data, test_data


def evaluate_saved_model(model_file, config_dict=None, verbose=False, trust=False):
    """Evaluate saved weights on valid and test without training them again.

    Used for rows that differ from a trained row only in how they score (e.g. BBQRec's
    ``score_mode``): the same weights, so a paired test isolates the scoring.

    Args:
        model_file (str): A checkpoint written by this package's trainer.
        config_dict (dict, optional): Evaluation-time overrides of the saved settings.
        verbose (bool): Show progress bars.
        trust (bool): Unpickle arbitrary objects (see :func:`load_data_and_model`).

    Returns:
        dict: The keys of :func:`run_recbole_bbq`'s result; ``best_valid_score`` and
        ``best_valid_result`` are this evaluation of valid, ``model_file`` is ``model_file``, and
        ``valid_per_user`` holds the valid users' values (as ``test_per_user``).
    """
    config, model, dataset, _, valid_data, test_data = load_data_and_model(model_file, config_dict, trust)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    show_progress = config["show_progress"] and verbose
    valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=show_progress)
    valid_per_user = per_user_record(dataset, trainer.last_per_user, config)
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=show_progress)
    return {
        "best_valid_score": calculate_valid_score(valid_result, config["valid_metric"].lower()),
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": valid_result,
        "test_result": test_result,
        "valid_curve": [],
        "stop_reason": None,
        "epochs_trained": 0,
        "test_per_user": per_user_record(dataset, trainer.last_per_user, config),
        "valid_per_user": valid_per_user,
        "model_file": model_file,
    }


def checkpoint_settings(checkpoint):
    """A loaded checkpoint's config as a plain dict (RecBole's own files pickle the Config)."""
    saved = checkpoint["config"]
    return dict(saved) if isinstance(saved, dict) else dict(saved.final_config_dict)


def saved_config(checkpoint, config_dict=None):
    """The :class:`Config` of a loaded checkpoint, with ``config_dict`` overriding its settings."""
    saved = checkpoint_settings(checkpoint)
    settings = {**saved_settings(saved), **(config_dict or {})}
    return Config(saved["model"], saved["dataset"], config_dict=settings)


def build_model(config):
    """Dataset, dataloaders and a freshly initialised model for ``config`` (seeded as in training).

    Returns:
        tuple: ``(model, dataset, train_data, valid_data, test_data)``.
    """
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    return model, dataset, train_data, valid_data, test_data
