"""Stage runner: features -> behaviour vectors -> BBQ tokenizer -> training (SPEC §2).

Each stage reuses its cached artifact when its inputs and config are unchanged, and runs the
stages it depends on first. ``--stage=train`` (the default) trains the model itself.
"""

from recbole_bbq import compat  # noqa: F401  (before recbole)

from recbole.utils import init_logger, init_seed

from recbole_bbq.errors import ConfigError
from recbole_bbq.resources import property_file

STAGES = ("features", "behavior", "tokenize", "train")


def stage_config(dataset, config_file_list=None, config_dict=None):
    """Config of the stages before training.

    They depend only on the data and on the ``behaviour`` and ``tokenizer`` sections, so the
    config is built for the behaviour model (SASRec) with the tokenizer defaults
    (``properties/tokenizer/BBQ.yaml``) below the user's files.
    """
    from recbole_bbq.config import Config

    files = [property_file("tokenizer", "BBQ.yaml"), *(config_file_list or [])]
    config = Config("SASRec", dataset, config_file_list=files, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
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


def run_stage(stage, dataset, config_file_list=None, config_dict=None, show_progress=True):
    """Run ``stage`` (and what it needs) and return the text to print.

    Args:
        stage (str): ``features``, ``behavior`` or ``tokenize``.
        dataset (str): Dataset name.
        config_file_list (list[str], optional): YAML files.
        config_dict (dict, optional): Overrides.
        show_progress (bool): Show progress bars.

    Returns:
        str: A summary; for ``tokenize`` the statistics table, one line per statistic.
    """
    if stage not in STAGES[:-1]:
        raise ConfigError(f"--stage must be one of {list(STAGES)}, got '{stage}'")
    config = stage_config(dataset, config_file_list, config_dict)
    if stage == "features":
        return run_features_stage(config)
    if stage == "behavior":
        from recbole_bbq.tokenizer.behaviour import behaviour_embeddings

        behaviour = behaviour_embeddings(config, show_progress=show_progress and config["show_progress"])
        return f"behaviour vectors: {behaviour.features.shape} in {behaviour.path}"
    from recbole_bbq.tokenizer.stage import format_statistics, run_tokenizer_stage

    path, stats = run_tokenizer_stage(config, show_progress=show_progress and config["show_progress"])
    return f"semantic IDs: {path}\n{format_statistics(stats)}"
