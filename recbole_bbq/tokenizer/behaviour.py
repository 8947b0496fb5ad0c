"""Stage 2: behaviour vectors = item embeddings of a SASRec trained on the train split only."""

import hashlib
import os
from logging import getLogger

import numpy as np

from recbole.utils import init_seed

from recbole_bbq.data.encoding import cached_feature_file
from recbole_bbq.data.features import read_feature_file, write_feature_file

# Budget of the behaviour SASRec; override with the ``behaviour`` dict in YAML.
BEHAVIOUR_DEFAULTS = {
    "epochs": 20,
    "hidden_size": 64,
    "inner_size": 256,
    "n_layers": 2,
    "n_heads": 2,
    "learning_rate": 0.001,
    "train_batch_size": 256,
    "hidden_dropout_prob": 0.5,
    "attn_dropout_prob": 0.5,
}
_HASHED_CONFIG_KEYS = ("seed", "MAX_ITEM_LIST_LENGTH", "loss_type", "hidden_act", "layer_norm_eps")


def behaviour_params(config):
    """:data:`BEHAVIOUR_DEFAULTS` updated with the ``behaviour`` dict of ``config``."""
    return {**BEHAVIOUR_DEFAULTS, **(config["behaviour"] or {})}


def train_split_fingerprint(train_dataset):
    """SHA-256 of the train split's rows, written as tokens (not internal ids).

    Valid and test targets are not in the train split, so changing them leaves this unchanged.
    """
    digest = hashlib.sha256()
    inter = train_dataset.inter_feat
    suffix = train_dataset.config["LIST_SUFFIX"]
    for field in sorted(inter.columns):
        # History lists (item_id_list) share the token table of their base field (item_id).
        token_field = field[: -len(suffix)] if field.endswith(suffix) else field
        if token_field not in train_dataset.field2id_token:
            continue  # lengths and positions follow from the token fields
        tokens = train_dataset.field2id_token[token_field][inter[field].numpy()]
        digest.update(field.encode())
        digest.update("\x1f".join(np.asarray(tokens, dtype=str).ravel().tolist()).encode())
    return digest.hexdigest()


def behaviour_cache_key(behaviour_config, train_dataset):
    """Key of the behaviour artifact: the train split plus every setting that shapes training."""
    params = {key: behaviour_config[key] for key in (*BEHAVIOUR_DEFAULTS, *_HASHED_CONFIG_KEYS)}
    digest = hashlib.sha256(repr(sorted(params.items())).encode())
    digest.update(train_split_fingerprint(train_dataset).encode())
    return digest.hexdigest()


def build_behaviour_config(config):
    """A SASRec config on the same dataset, with the behaviour budget applied last.

    The budget overrides even command-line keys, so ``--epochs=...`` meant for the main model
    does not change the behaviour stage.
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
    return behaviour_config


def behaviour_artifact_path(config, key):
    """The behaviour-vector file of cache ``key`` in ``config``'s dataset folder."""
    return os.path.join(config["data_path"], f"{config['dataset']}.behaviour-{key[:16]}.npz")


def behaviour_embeddings(config, show_progress=True):
    """Train (or reuse) the behaviour SASRec and return its item embedding feature file.

    Args:
        config (Config): The run configuration (any model); its dataset, seed and ``behaviour``
            budget are used.
        show_progress (bool): Show RecBole's training progress bars.

    Returns:
        FeatureFile: Item tokens plus ``[n, hidden_size]`` embeddings, ``meta["cache_key"]`` set.
    """
    from recbole_bbq.utils import create_dataset, data_preparation, get_model, get_trainer

    logger = getLogger()
    behaviour_config = build_behaviour_config(config)
    dataset = create_dataset(behaviour_config)
    train_data, _, _ = data_preparation(behaviour_config, dataset)
    key = behaviour_cache_key(behaviour_config, train_data._dataset)
    path = behaviour_artifact_path(config, key)
    cached = cached_feature_file(path, key)
    if cached is not None:
        logger.info(f"behaviour vectors: reusing {path}")
        return cached
    logger.info(f"behaviour vectors: training SASRec on the train split only -> {path}")
    init_seed(behaviour_config["seed"], behaviour_config["reproducibility"])
    model = get_model("SASRec")(behaviour_config, train_data._dataset).to(behaviour_config["device"])
    trainer = get_trainer(behaviour_config["MODEL_TYPE"], "SASRec")(behaviour_config, model)
    trainer.fit(train_data, None, verbose=False, saved=False, show_progress=show_progress)
    embeddings = model.item_embedding.weight.detach().cpu().numpy()[1:]
    tokens = dataset.field2id_token[dataset.iid_field][1:]
    meta = {"cache_key": key, "model": "SASRec", **behaviour_params(config)}
    write_feature_file(path, tokens, embeddings.astype(np.float32), meta=meta)
    return read_feature_file(path)
