"""Stage runner: features -> behaviour vectors -> BBQ tokenizer -> training (SPEC §2).

Each stage reuses its cached artifact when its inputs and config are unchanged, and runs the
stages it depends on first. ``--stage=train`` (the default) trains the model itself.
"""

import os

from recbole_bbq import compat  # noqa: F401  (before recbole)

from recbole.utils import init_logger, init_seed

from recbole_bbq.errors import ConfigError
from recbole_bbq.resources import property_file

STAGES = ("features", "behavior", "tokenize", "train")
# Models whose dataset needs semantic IDs, and the tokenizer that makes them.
SEMANTIC_ID_MODELS = {"BBQRec": "bbq", "BBQSASRec": "bbq", "TIGER": "tiger", "MMTIGER": "mmtiger"}


def stage_config(dataset, config_file_list=None, config_dict=None, model=None):
    """Config of the stages before training.

    They depend only on the data and on the ``behaviour``, ``tokenizer`` and ``rqvae`` sections,
    so the config is built for the behaviour model (SASRec) with the tokenizer defaults
    (``properties/tokenizer/BBQ.yaml``), then ``model``'s own YAML and its budget on this dataset
    (``properties/dataset/<dataset>/<model>.yaml``), below the user's files.
    """
    from recbole_bbq.config import Config

    files = [property_file("tokenizer", "BBQ.yaml")]
    if model:
        candidates = (property_file("model", f"{model}.yaml"), property_file("dataset", dataset, f"{model}.yaml"))
        files += [path for path in candidates if os.path.isfile(path)]
    files += list(config_file_list or [])
    config = Config("SASRec", dataset, config_file_list=files, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    return config


def run_features_stage(config):
    """Attach (and for the embedded dataset, create) the feature files; return a summary."""
    from recbole_bbq.data import MultiModalSequentialDataset

    dataset = MultiModalSequentialDataset(config)
    if not dataset.modalities:
        raise ConfigError(f"dataset '{config['dataset']}' lists no modalities (YAML key 'modalities')")
    return "\n".join(
        f"{m}: {tuple(x.shape)} from {dataset.feature_file(m)}" for m, x in dataset.item_features.items()
    )


def run_stage(stage, dataset, config_file_list=None, config_dict=None, show_progress=True, model=None):
    """Run ``stage`` (and what it needs) and return the text to print.

    Args:
        stage (str): ``features``, ``behavior`` or ``tokenize``.
        dataset (str): Dataset name.
        config_file_list (list[str], optional): YAML files.
        config_dict (dict, optional): Overrides.
        show_progress (bool): Show progress bars.
        model (str, optional): The model the stages are for; its YAML (and its budget on this
            dataset) shapes the behaviour and tokenizer settings, as in training.

    Returns:
        str: A summary; for ``tokenize`` the statistics table, one line per statistic.
    """
    if stage not in STAGES[:-1]:
        raise ConfigError(f"--stage must be one of {list(STAGES)}, got '{stage}'")
    config = stage_config(dataset, config_file_list, config_dict, model=model)
    init_logger(config)
    if stage == "features":
        return run_features_stage(config)
    if stage == "behavior":
        from recbole_bbq.tokenizer.behaviour import behaviour_embeddings

        behaviour = behaviour_embeddings(config, show_progress=show_progress and config["show_progress"])
        return f"behaviour vectors: {behaviour.features.shape} in {behaviour.path}"
    from recbole_bbq.tokenizer.stage import format_statistics, run_tokenizer_stage

    path, stats = run_tokenizer_stage(config, show_progress=show_progress and config["show_progress"])
    return f"semantic IDs: {path}\n{format_statistics(stats)}"


def prepare_semantic_ids(model, dataset, config_file_list=None, config_dict=None, show_progress=True):
    """Run the tokenizer stages a model needs; return the config overrides that attach them.

    Returns:
        dict: ``semantic_ids_file`` and ``semantic_ids_key`` for models in
        :data:`SEMANTIC_ID_MODELS`; empty for any other model or when the user set the file.
    """
    from recbole_bbq.data.semantic_ids import read_semantic_id_file

    kind = SEMANTIC_ID_MODELS.get(model)
    if kind is None or (config_dict or {}).get("semantic_ids_file"):
        return {}
    config = stage_config(dataset, config_file_list, config_dict, model=model)
    show_progress = show_progress and config["show_progress"]
    if kind == "bbq":
        from recbole_bbq.tokenizer.stage import run_tokenizer_stage

        path, _ = run_tokenizer_stage(config, show_progress=show_progress)
        return {"semantic_ids_file": path, "semantic_ids_key": read_semantic_id_file(path)[2]["cache_key"]}
    from recbole_bbq.data import SequentialDataset
    from recbole_bbq.tokenizer.rqvae import tiger_semantic_ids

    item_tokens = [str(t) for t in SequentialDataset(config).field2id_token[config["ITEM_ID_FIELD"]][1:]]
    path, key, _ = tiger_semantic_ids(config, item_tokens, show_progress=show_progress, kind=kind)
    return {"semantic_ids_file": path, "semantic_ids_key": key}


def run_pipeline(model, dataset, config_file_list=None, config_dict=None, **run_kwargs):
    """Every missing stage for ``model``, then training and evaluation (``--stage=train``).

    Args:
        model (str): Model name.
        dataset (str): Dataset name.
        config_file_list (list[str], optional): YAML files.
        config_dict (dict, optional): Overrides.
        **run_kwargs: ``saved``, ``nproc``, ``world_size``, ``ip``, ``port``, ``group_offset`` of
            :func:`recbole_bbq.quick_start.run`.

    Returns:
        dict | None: The run's result (see :func:`recbole_bbq.quick_start.run_recbole_bbq`).
    """
    from recbole_bbq.quick_start import run

    overrides = prepare_semantic_ids(model, dataset, config_file_list, config_dict)
    return run(model, dataset, config_file_list, config_dict={**(config_dict or {}), **overrides}, **run_kwargs)
