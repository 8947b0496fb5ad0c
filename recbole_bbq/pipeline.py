"""Stage runner: features -> behaviour vectors -> tokenizer -> training (docs/method.md, "Pipeline").

Each stage reuses its cached artifact when its inputs and config are unchanged, and runs the
stages it depends on first. ``--stage=train`` (the default) trains the model itself. The model's
own config is built (and so validated) before any stage runs.
"""

import os
import time
from logging import getLogger

from recbole.utils import init_seed

from recbole_bbq.errors import ConfigError, UnknownModelError
from recbole_bbq.model.traits import model_traits
from recbole_bbq.resources import property_file

STAGES = ("features", "behaviour", "tokenize", "train")
# American spelling accepted on the command line and in run_stage.
STAGE_ALIASES = {"behavior": "behaviour"}


def model_stages(model):
    """The stages before training of ``model`` (its traits, :mod:`recbole_bbq.model.traits`)."""
    from recbole_bbq.model.traits import model_traits

    return model_traits(model).stages


def check_model_name(model):
    """Raise :class:`UnknownModelError` with the closest names if ``model`` does not exist."""
    from recbole_bbq.utils import get_model, plugin_model_names, recbole_model_names
    from recbole_bbq.validation import alternatives, closest

    try:
        get_model(model)
    except UnknownModelError:
        plugin, builtin = plugin_model_names(), recbole_model_names()
        close = closest(model, plugin + builtin)
        hint = f" (did you mean {alternatives(close)}?)" if close else ""
        raise UnknownModelError(
            f"Unknown model '{model}'{hint}. recbole_bbq models: {', '.join(plugin)}. "
            f"RecBole models: {', '.join(builtin)}."
        ) from None


def check_stage_for_model(stage, model):
    """Refuse a stage that ``model`` does not have, naming the stages it has."""
    from recbole_bbq.utils import plugin_model_names

    check_model_name(model)
    stages = model_stages(model)
    if not stages:
        with_stages = [name for name in plugin_model_names() if model_stages(name)]
        raise ConfigError(
            f"{model} has no '{stage}' stage: it trains on the interactions alone, with no features, "
            f"behaviour vectors or semantic IDs (drop --stage; models with stages: {', '.join(with_stages)})"
        )
    if stage not in stages:
        raise ConfigError(f"{model} has no '{stage}' stage; its stages are: {', '.join(stages)}")


def model_config(model, dataset, config_file_list=None, config_dict=None):
    """The config ``model`` will train with; building it validates every key up front."""
    from recbole_bbq.config import Config

    return Config(model, dataset, config_file_list=config_file_list, config_dict=config_dict)


def stage_config(dataset, config_file_list=None, config_dict=None, model=None):
    """Config of the stages before training.

    They depend only on the data and on the ``behaviour``, ``tokenizer`` and ``rqvae`` sections,
    so the config is built for the behaviour model (SASRec) with the stage defaults
    (``properties/tokenizer/``: ``BBQ.yaml``, ``RQVAE.yaml``, ``behaviour.yaml``), then ``model``'s
    own YAML and its budget on this dataset (``properties/dataset/<dataset>/<model>.yaml``), below
    the user's files. A section set in a later file replaces the default one as a whole; the
    stages fill in its missing keys from the same defaults (:mod:`recbole_bbq.tokenizer.defaults`).
    """
    from recbole_bbq.config import Config

    files = [property_file("tokenizer", name) for name in ("BBQ.yaml", "RQVAE.yaml", "behaviour.yaml")]
    if model:
        candidates = (
            property_file("model", f"{model}.yaml"),
            property_file("dataset", dataset, f"{model}.yaml"),
        )
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
    """Run ``model``'s ``stage`` (and the stages it needs) and return the text to print.

    Args:
        stage (str): ``features``, ``behaviour`` (alias ``behavior``) or ``tokenize``.
        dataset (str): Dataset name.
        config_file_list (list[str], optional): YAML files.
        config_dict (dict, optional): Overrides.
        show_progress (bool): Show progress bars.
        model (str, optional): The model the stages are for (its traits' ``stages``): its
            tokenizer runs at ``tokenize`` (BBQ for BBQRec/BBQSASRec, RQ-VAE for TIGER/MMTIGER),
            and its YAML (and its budget on this dataset) shapes the stage settings, as in
            training. None runs the BBQ stages.

    Returns:
        str: A summary; for ``tokenize`` the statistics, one line per statistic.

    Raises:
        UnknownModelError: ``model`` does not exist.
        ConfigError: ``model`` has no such stage, or a config key is invalid (checked before
            any stage runs).
    """
    stage = STAGE_ALIASES.get(stage, stage)
    if stage not in STAGES[:-1]:
        raise ConfigError(f"--stage must be one of {list(STAGES)}, got '{stage}'")
    if model is not None:
        check_stage_for_model(stage, model)
        model_config(model, dataset, config_file_list, config_dict)
    config = stage_config(dataset, config_file_list, config_dict, model=model)
    from recbole_bbq.utils import init_logger

    init_logger(config)
    show_progress = show_progress and config["show_progress"]
    if stage == "features":
        return run_features_stage(config)
    if stage == "behaviour":
        from recbole_bbq.tokenizer.behaviour import behaviour_embeddings

        behaviour = behaviour_embeddings(config, show_progress=show_progress)
        return f"behaviour vectors: {behaviour.features.shape} in {behaviour.path}"
    kind = model_traits(model).semantic_ids if model else "bbq"
    path, _, stats = build_semantic_ids(kind, config, show_progress)
    return f"semantic IDs: {path}\n{format_tokenizer_statistics(kind, stats)}"


def build_semantic_ids(kind, config, show_progress=True):
    """Run (or reuse) the tokenizer ``kind`` (a model's ``semantic_ids`` trait) on a stage config.

    Returns:
        tuple[str, str, dict]: The semantic-ID file, its cache key and its statistics.
    """
    if kind == "bbq":
        from recbole_bbq.data.semantic_ids import read_semantic_id_file
        from recbole_bbq.tokenizer.stage import run_tokenizer_stage

        path, stats = run_tokenizer_stage(config, show_progress=show_progress)
        return path, read_semantic_id_file(path)[2]["cache_key"], stats
    from recbole_bbq.data import SequentialDataset
    from recbole_bbq.tokenizer.rqvae import tiger_semantic_ids

    item_tokens = [str(t) for t in SequentialDataset(config).field2id_token[config["ITEM_ID_FIELD"]][1:]]
    return tiger_semantic_ids(config, item_tokens, show_progress=show_progress, kind=kind)


def format_tokenizer_statistics(kind, stats):
    """One line per statistic: the BBQ table, or ``name: value`` for the RQ-VAE tokenizers."""
    if kind == "bbq":
        from recbole_bbq.tokenizer.stage import format_statistics

        return format_statistics(stats)
    return "\n".join(
        f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}"
        for name, value in stats.items()
    )


def prepare_semantic_ids(model, dataset, config_file_list=None, config_dict=None, show_progress=True):
    """Run the tokenizer stages a model needs; return the config overrides that attach them.

    The model's config is built first, so an invalid key stops here, before any stage runs. A
    ``semantic_ids_file`` the user set (YAML file, ``config_dict`` or command line) is used as
    given, checked against their ``semantic_ids_key`` if any; it is never replaced.

    Returns:
        dict: ``semantic_ids_file`` and ``semantic_ids_key`` for models with a ``semantic_ids``
        trait; empty for any other model or when the user set the file.
    """
    kind = model_traits(model).semantic_ids
    if kind is None:
        return {}
    if model_config(model, dataset, config_file_list, config_dict)["semantic_ids_file"]:
        return {}
    config = stage_config(dataset, config_file_list, config_dict, model=model)
    path, key, _ = build_semantic_ids(kind, config, show_progress and config["show_progress"])
    return {"semantic_ids_file": path, "semantic_ids_key": key}


def wait_for_semantic_ids(model, dataset, config_file_list=None, config_dict=None, poll_seconds=10):
    """:func:`prepare_semantic_ids` that builds nothing: it waits until every artifact is there.

    The nodes of a multi-node run other than the first (``group_offset`` > 0) call this: the
    first node runs the stages, and the others read its artifacts from the shared file system
    instead of fitting tokenizers of their own (which could differ across machines).

    Raises:
        ConfigError: An artifact is still missing after ``stage_wait_seconds``.
    """
    from recbole_bbq.data.artifacts import ArtifactNotReady, reuse_only

    limit = float(model_config(model, dataset, config_file_list, config_dict)["stage_wait_seconds"])
    deadline, logged = time.monotonic() + limit, set()
    while True:
        try:
            with reuse_only():
                return prepare_semantic_ids(
                    model, dataset, config_file_list, config_dict, show_progress=False
                )
        except ArtifactNotReady as missing:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"waited {limit:.0f} s (stage_wait_seconds) for {missing.path}, which the first "
                    f"node (group_offset 0) builds; does this node see its data_path?"
                ) from None
            if missing.path not in logged:
                getLogger().info(f"waiting for the first node to build {missing.path}")
                logged.add(missing.path)
            time.sleep(poll_seconds)


def run_pipeline(model, dataset, config_file_list=None, config_dict=None, test=True, **run_kwargs):
    """Every missing stage for ``model``, then training and evaluation (``--stage=train``).

    The stages run once, in this process, before any training process starts; on a node other
    than the first of a multi-node run (``group_offset`` > 0) they wait for the first node's
    artifacts instead (:func:`wait_for_semantic_ids`).

    Args:
        model (str): Model name.
        dataset (str): Dataset name.
        config_file_list (list[str], optional): YAML files.
        config_dict (dict, optional): Overrides.
        test (bool): Evaluate the test split; False never evaluates it (tuning on valid).
        **run_kwargs: ``saved``, ``nproc``, ``world_size``, ``ip``, ``port``, ``group_offset`` of
            :func:`recbole_bbq.quick_start.run`.

    Returns:
        dict | None: The run's result (see :func:`recbole_bbq.quick_start.run_recbole_bbq`).
    """
    from recbole_bbq.quick_start import run

    check_model_name(model)
    # Only the first node of a multi-node run builds the artifacts; the others wait for them.
    prepare = wait_for_semantic_ids if run_kwargs.get("group_offset", 0) > 0 else prepare_semantic_ids
    overrides = prepare(model, dataset, config_file_list, config_dict)
    return run(
        model,
        dataset,
        config_file_list,
        config_dict={**(config_dict or {}), **overrides},
        test=test,
        **run_kwargs,
    )
