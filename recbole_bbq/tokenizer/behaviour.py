"""Stage 2: behaviour vectors = item embeddings of a SASRec trained on the train split only.

Defaults of the ``behaviour`` section (the SASRec budget): ``properties/tokenizer/behaviour.yaml``.
"""

import os
from dataclasses import dataclass
from logging import getLogger

import numpy as np
from recbole.utils import init_seed

from recbole_bbq.data.artifacts import check_building_allowed, keyed_path, reuse_cached, sha256_of_bytes
from recbole_bbq.data.features import read_cached_feature_file, read_feature_file, write_feature_file
from recbole_bbq.tokenizer.defaults import section_defaults, with_defaults

# Config keys outside the ``behaviour`` section that shape the behaviour SASRec too.
_HASHED_CONFIG_KEYS = ("seed", "MAX_ITEM_LIST_LENGTH", "loss_type", "hidden_act", "layer_norm_eps")


def behaviour_params(config):
    """The ``behaviour`` section of ``config`` over ``properties/tokenizer/behaviour.yaml``."""
    return with_defaults("behaviour.yaml", config["behaviour"])


def train_split_fingerprint(train_dataset):
    """SHA-256 of the train split's rows, written as tokens (not internal ids).

    Valid and test targets are not in the train split, so changing them leaves this unchanged.
    """
    parts = []
    inter = train_dataset.inter_feat
    suffix = train_dataset.config["LIST_SUFFIX"]
    for field in sorted(inter.columns):
        # History lists (item_id_list) share the token table of their base field (item_id).
        token_field = field[: -len(suffix)] if field.endswith(suffix) else field
        if token_field not in train_dataset.field2id_token:
            continue  # lengths and positions follow from the token fields
        tokens = train_dataset.field2id_token[token_field][inter[field].numpy()]
        parts += [field, "\x1f".join(np.asarray(tokens, dtype=str).ravel().tolist())]
    return sha256_of_bytes(*parts)


def behaviour_cache_key(behaviour_config, train_dataset):
    """Key of the behaviour artifact: the train split plus every setting that shapes training."""
    keys = (*section_defaults("behaviour.yaml"), *_HASHED_CONFIG_KEYS)
    params = {key: behaviour_config[key] for key in keys}
    return sha256_of_bytes(repr(sorted(params.items())), train_split_fingerprint(train_dataset))


def build_behaviour_config(config):
    """A SASRec config on the same dataset, with the behaviour budget applied last.

    The budget overrides even command-line keys, so ``--epochs=...`` meant for the main model
    does not change the behaviour stage, and it never keeps a resumable state
    (``checkpoint_name``).
    """
    from recbole_bbq.config import Config

    overrides = {
        "data_path": os.path.dirname(os.path.normpath(config["data_path"])),
        "checkpoint_dir": config["checkpoint_dir"],
        "seed": config["seed"],
        "state": config["state"],
        "show_progress": config["show_progress"],
        "use_gpu": config["use_gpu"],
        "gpu_id": config["gpu_id"],
        "behaviour": config["behaviour"],
    }
    behaviour_config = Config("SASRec", config["dataset"], config_dict=overrides)
    behaviour_config.final_config_dict.update(behaviour_params(config))
    # A --checkpoint_name=... meant for the main model would make this SASRec save its training
    # state under that name, and the main model then "resume" from a SASRec state.
    behaviour_config.final_config_dict["checkpoint_name"] = None
    return behaviour_config


def behaviour_artifact_path(config, key):
    """The behaviour-vector file of cache ``key`` in ``config``'s dataset folder."""
    return keyed_path(config, "behaviour", key, ".npz")


@dataclass
class BehaviourRun:
    """The behaviour SASRec's config, dataset and train split, and the artifact they key.

    Attributes:
        config (Config): The behaviour SASRec's config (:func:`build_behaviour_config`).
        dataset (Dataset): Its dataset.
        train_data (AbstractDataLoader): Its train split.
        key (str): The cache key (:func:`behaviour_cache_key`).
        path (str): The behaviour-vector file of that key.
    """

    config: object
    dataset: object
    train_data: object
    key: str
    path: str


def prepare_behaviour_run(config):
    """Build the behaviour SASRec's config and data and key its artifact, without training."""
    from recbole_bbq.utils import create_dataset, data_preparation

    behaviour_config = build_behaviour_config(config)
    dataset = create_dataset(behaviour_config)
    train_data, _, _ = data_preparation(behaviour_config, dataset)
    key = behaviour_cache_key(behaviour_config, train_data._dataset)
    return BehaviourRun(behaviour_config, dataset, train_data, key, behaviour_artifact_path(config, key))


def train_behaviour_embeddings(run, show_progress=True):
    """Train the behaviour SASRec of ``run``; its item embeddings (padding excluded) and tokens."""
    from recbole_bbq.utils import get_model, get_trainer

    behaviour_config = run.config
    init_seed(behaviour_config["seed"], behaviour_config["reproducibility"])
    model = get_model("SASRec")(behaviour_config, run.train_data._dataset).to(behaviour_config["device"])
    trainer = get_trainer(behaviour_config["MODEL_TYPE"], "SASRec")(behaviour_config, model)
    trainer.fit(run.train_data, None, verbose=False, saved=False, show_progress=show_progress)
    embeddings = model.item_embedding.weight.detach().cpu().numpy()[1:]
    tokens = run.dataset.field2id_token[run.dataset.iid_field][1:]
    return tokens, embeddings


def behaviour_embeddings(config, show_progress=True):
    """Train (or reuse) the behaviour SASRec and return its item embedding feature file.

    Args:
        config (Config): The run configuration (any model); its dataset, seed and ``behaviour``
            budget are used.
        show_progress (bool): Show RecBole's training progress bars.

    Returns:
        FeatureFile: Item tokens plus ``[n, hidden_size]`` embeddings, ``meta["cache_key"]`` set.
    """
    logger = getLogger()
    run = prepare_behaviour_run(config)
    cached = reuse_cached(run.path, run.key, read_cached_feature_file)
    if cached is not None:
        logger.info(f"behaviour vectors: reusing {run.path}")
        return cached
    check_building_allowed(run.path)
    logger.info(f"behaviour vectors: training SASRec on the train split only -> {run.path}")
    tokens, embeddings = train_behaviour_embeddings(run, show_progress)
    meta = {"cache_key": run.key, "model": "SASRec", **behaviour_params(config)}
    write_feature_file(run.path, tokens, embeddings.astype(np.float32), meta=meta)
    return read_feature_file(run.path)
