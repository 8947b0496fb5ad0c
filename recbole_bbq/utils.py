"""Plugin-first lookups of models, datasets and trainers, falling back to RecBole."""

import importlib
import importlib.util
import inspect
import os
import pkgutil

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import ModelType
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils import init_logger as recbole_init_logger

from recbole_bbq import compat  # noqa: F401  (before recbole)
from recbole_bbq.errors import UnknownModelError

compat.disable_recbole_anomaly_detection()

# RecBole's init_logger writes ./log/<model>/<model>-<dataset>-<time>-<hash>.log.
RECBOLE_LOG_DIR = "log"

_PLUGIN_MODEL_PACKAGES = ["sequential_recommender"]
# RecBole's exlib_recommender package is left out: importing it needs xgboost and lightgbm.
_RECBOLE_MODEL_PACKAGES = [
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
]


def _find_model_class(root, packages, model_name):
    """Return ``root.model.<package>.<model_name.lower()>.<model_name>`` or None."""
    for package in packages:
        module_path = f"{root}.model.{package}.{model_name.lower()}"
        if importlib.util.find_spec(module_path) is not None:
            return getattr(importlib.import_module(module_path), model_name, None)
    return None


def plugin_model_names():
    """Names of the models implemented in recbole_bbq, sorted."""
    names = []
    for package in _PLUGIN_MODEL_PACKAGES:
        pkg = importlib.import_module(f"recbole_bbq.model.{package}")
        for info in pkgutil.iter_modules(pkg.__path__):
            module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            names += [
                name
                for name, obj in vars(module).items()
                if inspect.isclass(obj)
                and issubclass(obj, AbstractRecommender)
                and obj.__module__ == module.__name__
                and name.lower() == info.name
            ]
    return sorted(names)


def recbole_model_names():
    """Names of RecBole's built-in models (without the xgboost/lightgbm ones), sorted."""
    names = set()
    for package in _RECBOLE_MODEL_PACKAGES:
        pkg = importlib.import_module(f"recbole.model.{package}")
        names.update(
            name
            for name, obj in vars(pkg).items()
            if inspect.isclass(obj) and issubclass(obj, AbstractRecommender)
        )
    return sorted(names)


def get_model(model_name):
    """Return the model class named ``model_name``, looking in recbole_bbq first.

    Args:
        model_name (str): Model class name, e.g. ``"SASRec"`` or ``"BBQRec"``.

    Returns:
        type: The model class.

    Raises:
        UnknownModelError: If neither recbole_bbq nor RecBole has the model.
    """
    model_class = _find_model_class("recbole_bbq", _PLUGIN_MODEL_PACKAGES, model_name)
    if model_class is None:
        model_class = _find_model_class("recbole", _RECBOLE_MODEL_PACKAGES, model_name)
    if model_class is None and model_name.lower() in ("xgboost", "lightgbm"):
        return importlib.import_module("recbole.utils").get_model(model_name)
    if model_class is None:
        raise UnknownModelError(
            f"Unknown model '{model_name}'. "
            f"recbole_bbq models: {', '.join(plugin_model_names()) or '(none)'}. "
            f"RecBole models: {', '.join(recbole_model_names())}."
        )
    return model_class


def create_dataset(config):
    """Build the dataset for ``config['model']``.

    Lookup order: :class:`recbole_bbq.data.MultiModalSequentialDataset` for models whose traits
    (:mod:`recbole_bbq.model.traits`) need item features or semantic IDs; a ``<Model>Dataset``
    of RecBole; :class:`recbole_bbq.data.SequentialDataset` for other sequential models (it fixes
    history truncation of benchmark files); RecBole's default otherwise. Embedded datasets
    (ml-100k) are copied into ``data_path`` first when missing.

    Args:
        config (Config): The run configuration.

    Returns:
        Dataset: The filtered dataset.
    """
    from recbole_bbq import data
    from recbole_bbq.model.traits import model_traits

    data.ensure_embedded_dataset(config["data_path"], config["dataset"])
    if model_traits(get_model(config["model"])).multimodal:
        return data.MultiModalSequentialDataset(config)
    recbole_has_own = hasattr(importlib.import_module("recbole.data.dataset"), config["model"] + "Dataset")
    if not recbole_has_own and config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        return data.SequentialDataset(config)
    return recbole_create_dataset(config)


def data_preparation(config, dataset):
    """Split ``dataset`` into train/valid/test dataloaders.

    RecBole's dataloaders, except that ``length_bucketing: true`` swaps in
    :class:`recbole_bbq.data.dataloader.LengthBucketedTrainDataLoader` for training; plugin
    behaviour lives in the dataset class returned by :func:`create_dataset`.

    Returns:
        tuple: ``(train_data, valid_data, test_data)``.
    """
    train_data, valid_data, test_data = recbole_data_preparation(config, dataset)
    if config["length_bucketing"] and config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        from recbole_bbq.data.dataloader import LengthBucketedTrainDataLoader

        train_data = LengthBucketedTrainDataLoader(
            config, train_data._dataset, train_data._sampler, shuffle=True
        )
    return train_data, valid_data, test_data


def get_trainer(model_type, model_name):
    """Return the trainer class for a model, looking in :mod:`recbole_bbq.trainer` first.

    RecBole's trainers are returned wrapped in :class:`recbole_bbq.trainer.CompatTrainerMixin`
    (checkpoint loading on torch >= 2.6, DDP on CPU).

    Args:
        model_type (ModelType): The model type.
        model_name (str): The model name.

    Returns:
        type: Trainer class.
    """
    trainer_module = importlib.import_module("recbole_bbq.trainer")
    plugin_trainer = getattr(trainer_module, model_name + "Trainer", None)
    if plugin_trainer is not None:
        return plugin_trainer
    return trainer_module.compatible_trainer(recbole_get_trainer(model_type, model_name))


def ensure_run_folders(config):
    """Create the folders a RecBole run writes to, tolerating another run creating them too.

    RecBole checks ``os.path.exists`` and then calls ``os.makedirs`` (``init_logger`` for
    ``./log/<model>``, ``Trainer.__init__`` for ``checkpoint_dir``), so of two runs started at once
    in a fresh folder the slower one dies with ``FileExistsError``. Creating them first with
    ``exist_ok=True`` closes that window. (TensorBoard already creates its folders safely.)

    Args:
        config (Config): The run configuration (``model``, ``checkpoint_dir``).

    Returns:
        list[str]: The folders that now exist.
    """
    folders = [RECBOLE_LOG_DIR, os.path.join(RECBOLE_LOG_DIR, str(config["model"]))]
    if config["checkpoint_dir"]:
        folders.append(config["checkpoint_dir"])
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    return folders


def init_logger(config):
    """RecBole's ``init_logger``, safe when several runs start at once in the same folder.

    Use it instead of ``recbole.utils.init_logger``; see :func:`ensure_run_folders`.

    Args:
        config (Config): The run configuration.
    """
    ensure_run_folders(config)
    recbole_init_logger(config)
